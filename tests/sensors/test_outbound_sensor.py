"""outbound_sensor, evaluated against a real instance, warehouse and SQL step queues: it requests a
run_outbound run when the outbox has unsent rows or a step queue holds messages, with a run key made of the
tick's state (the same state launches once), and skips while a run is in flight."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.outbound.relay import relay
from tests.support import outbound as seed


def _tick(instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    from integration_assets.sensors.outbound import outbound_requests

    return outbound_requests(dg.build_sensor_context(instance=instance))


def _request(result: dg.SensorResult | dg.SkipReason) -> dg.RunRequest:
    assert isinstance(result, dg.SensorResult), result
    (req,) = result.run_requests or []
    assert isinstance(req, dg.RunRequest)
    return req


@pytest.mark.usefixtures("warehouse_url")
def test_nothing_waiting_skips() -> None:
    with dg.instance_for_test() as instance:
        result = _tick(instance)
    assert isinstance(result, dg.SkipReason) and "nothing waiting" in (result.skip_message or "")


def test_unsent_outbox_rows_request_one_run_per_state(engine: sa.Engine) -> None:
    from integration_assets.definitions import defs

    seed.outbox_rows(engine, ("deal.won:1", "odoo_order", "1"), ("deal.won:2", "odoo_order", "2"))
    with dg.instance_for_test() as instance:
        first, again = _request(_tick(instance)), _request(_tick(instance))
        assert first.run_key == again.run_key  # same state: Dagster launches it once
        assert first.run_key and first.run_key.startswith("outbound_")
        assert first.tags["integration/outbox_unsent_at_launch"] == "2"

        seed.outbox_rows(engine, ("deal.won:3", "odoo_order", "3"))
        assert _request(_tick(instance)).run_key != first.run_key  # new work: a new run

        # A finished run makes the state new, so what waits out a retry backoff gets a later run.
        instance.create_run_for_job(defs.resolve_job_def("run_outbound"), status=dg.DagsterRunStatus.SUCCESS)
        after = _request(_tick(instance))
        assert after.run_key not in (first.run_key, None)


def test_messages_on_a_step_queue_request_a_run(engine: sa.Engine) -> None:
    seed.outbox_rows(engine, ("order.confirmed:5", "easypost_label", "5"))
    relay(engine)  # now on the label queue, nothing unsent
    with dg.instance_for_test() as instance:
        req = _request(_tick(instance))
    assert req.tags["integration/outbox_unsent_at_launch"] == "0"
    assert req.tags["integration/queued_at_launch"] == "1"


def test_no_second_run_while_one_is_in_flight(engine: sa.Engine) -> None:
    from integration_assets.definitions import defs

    seed.outbox_rows(engine, ("deal.won:1", "odoo_order", "1"))
    with dg.instance_for_test() as instance:
        instance.create_run_for_job(defs.resolve_job_def("run_outbound"), status=dg.DagsterRunStatus.STARTED)
        result = _tick(instance)
    assert isinstance(result, dg.SkipReason) and "still" in (result.skip_message or "")


def test_the_sensor_targets_run_outbound() -> None:
    from integration_assets.definitions import defs

    sensor = defs.resolve_sensor_def("outbound_sensor")
    assert sensor.job_name == "run_outbound"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
