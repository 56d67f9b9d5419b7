"""The event-queue sensor, evaluated against a real instance, warehouse and SQL queue; and the run it
launches, executed in-process: what it materializes, observes and tags."""

from __future__ import annotations

import json

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.queue import Message
from integration_assets.queue.sql import SqlQueue
from integration_assets.sandbox.events import charge, payment_intent, stripe_event
from integration_assets.warehouse.db import get_engine


def _stripe(n: int, obj: str = "payment_intent") -> Message:
    body = (
        payment_intent(
            f"pi_{n}", 1000, "usd", "succeeded", 1_790_000_000, customer=None, charge=None, metadata={}
        )
        if obj == "payment_intent"
        else charge(f"ch_{n}", f"pi_{n}", 1000, "usd", 1_790_000_000, customer=None)
    )
    doc = stripe_event(f"evt_{obj[:2]}{n}", f"{obj}.succeeded", body, 1_790_000_000 + n)
    return Message(
        id=f"stripe:{doc['id']}", source="stripe", event_type=doc["type"], body=json.dumps(doc).encode()
    )


def _tick(instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    from integration_assets.sensors.events import events_queue_requests

    return events_queue_requests(dg.build_sensor_context(instance=instance))


@pytest.mark.usefixtures("warehouse_url")
def test_empty_queue_skips() -> None:
    with dg.instance_for_test() as instance:
        result = _tick(instance)
    assert isinstance(result, dg.SkipReason) and "no events" in (result.skip_message or "")


def test_events_waiting_launch_one_drain_per_tick_with_a_unique_run_key(warehouse_url: str) -> None:
    from integration_assets.assets.events import DRAIN_OP

    SqlQueue(warehouse_url).publish_many([_stripe(n) for n in range(3)])
    with dg.instance_for_test() as instance:
        first, second = _tick(instance), _tick(instance)
    assert isinstance(first, dg.SensorResult) and isinstance(second, dg.SensorResult)
    (a,), (b,) = first.run_requests, second.run_requests
    assert a.run_key != b.run_key and a.run_key.startswith("drain_")
    assert a.run_config["ops"][DRAIN_OP]["config"]["drain_id"] == a.run_key
    assert a.tags["integration/event-queue"] == "sql:events"
    assert a.tags["integration/queue_depth_at_launch"] == "3"


def test_no_second_drain_while_one_is_in_flight(warehouse_url: str) -> None:
    from integration_assets.definitions import defs

    SqlQueue(warehouse_url).publish_many([_stripe(1)])
    with dg.instance_for_test() as instance:
        instance.create_run_for_job(defs.resolve_job_def("drain_events"), status=dg.DagsterRunStatus.STARTED)
        result = _tick(instance)
    assert isinstance(result, dg.SkipReason) and "still" in (result.skip_message or "")


def test_the_launched_run_drains_and_reports(warehouse_url: str) -> None:
    """The run the sensor requests: applies the events, materializes warehouse/payments (not
    shipment_events: no tracker event came), observes events/queue, tags the run with its figures."""
    from integration_assets.definitions import defs

    queue = SqlQueue(warehouse_url)
    queue.publish_many([_stripe(n) for n in range(5)] + [_stripe(n, "charge") for n in range(2)])
    with dg.instance_for_test() as instance:
        tick = _tick(instance)
        assert isinstance(tick, dg.SensorResult)
        (req,) = tick.run_requests
        res = defs.resolve_job_def("drain_events").execute_in_process(
            instance=instance, run_config=req.run_config, tags=req.tags
        )
        assert res.success
        mats = res.get_asset_materialization_events()
        assert [m.asset_key.to_user_string() for m in mats] == ["warehouse/payments"]
        meta = mats[0].materialization.metadata
        assert meta["events_applied"].value == 7 and meta["events_in"].value == 7
        assert meta["queue_depth"].value == 0 and meta["duplicates_suppressed"].value == 0
        observations = [e for e in res.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        assert len(observations) == 1
        run = instance.get_run_by_id(res.run_id)
        assert run is not None and run.tags["integration/events_applied"] == "7"
        assert run.tags["integration/drain"] == req.run_key
    with get_engine(warehouse_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one() == 7
        batch_ids = set(conn.scalars(sa.text("SELECT DISTINCT batch_id FROM processed_events")))
    assert all(b.startswith(req.run_key) for b in batch_ids)
    assert queue.depth() == 0
