"""The schedules of the partitioned pulls (jobs/pull.py): today's partition, late edits, catch-up of days that
never ran, and RUNNING only once the source's credentials are set."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest

from integration_assets.jobs.pull import pull_definitions, scheduled_partition_keys, source_configured
from integration_assets.resources import WarehouseResource

TICK = datetime(2026, 10, 7, 10, 30, tzinfo=UTC)


def test_a_tick_runs_its_day_the_late_edit_days_and_days_that_never_ran() -> None:
    never = {"2026-10-03", "2026-09-20"}
    keys = scheduled_partition_keys(date(2026, 9, 1), TICK, 1, never.__contains__)
    assert keys == ["2026-10-07", "2026-10-06", "2026-10-03"]  # 09-20 is beyond the 7 catch-up days
    assert scheduled_partition_keys(date(2026, 10, 7), TICK, 3, lambda k: True) == ["2026-10-07"]  # start


def _defs() -> dg.Definitions:
    return dg.Definitions.merge(
        pull_definitions(), dg.Definitions(resources={"warehouse": WarehouseResource()})
    )


def _requests(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[str]:
    schedule = defs.resolve_schedule_def("api_hubspot_schedule")
    ctx = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=TICK, repository_def=defs.get_repository_def()
    )
    result = schedule.evaluate_tick(ctx)
    return [str(r.partition_key) for r in result.run_requests or []]


def test_the_schedule_catches_up_what_never_ran_but_leaves_failed_days_to_a_backfill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defs = dg.Definitions.merge(
        pull_definitions(), dg.Definitions(resources={"warehouse": WarehouseResource()})
    )
    with dg.instance_for_test() as instance:
        # today, 1 late-edit day, then the 7 days before that never ran
        expected = [f"2026-10-{d:02d}" for d in range(7, 0, -1)] + ["2026-09-30", "2026-09-29"]
        assert _requests(defs, instance) == expected
        # A failed run of 10-03 (the API was down) is the backfill's to redo, not the schedule's.
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "fake-hubspot-token")  # resolved when a run is created
        job = defs.resolve_job_def("api_hubspot")
        run = instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2026-10-03"})
        instance.report_run_failed(run)
        assert "2026-10-03" not in _requests(defs, instance)
        assert {"2026-10-07", "2026-10-06"} <= set(_requests(defs, instance))


def test_schedules_run_by_default_only_where_credentials_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    status = lambda d, n: d.resolve_schedule_def(n).default_status  # noqa: E731
    defs = _defs()
    assert status(defs, "api_hubspot_schedule") == dg.DefaultScheduleStatus.STOPPED
    assert status(defs, "api_odoo_schedule") == dg.DefaultScheduleStatus.STOPPED
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "fake-hubspot-token")  # as the sandbox sets for the fake
    monkeypatch.setenv("HUBSPOT_BASE_URL", "http://127.0.0.1:8765")
    assert source_configured("hubspot") and not source_configured("odoo")
    defs = _defs()
    assert status(defs, "api_hubspot_schedule") == dg.DefaultScheduleStatus.RUNNING
    assert status(defs, "api_odoo_schedule") == dg.DefaultScheduleStatus.STOPPED
