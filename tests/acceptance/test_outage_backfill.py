"""Issue 13 acceptance: an API outage fails three days of scheduled pulls, an alert fires, the API comes back,
one backfill of the failed days (launched by ``integration-assets backfill``, which makes the UI's GraphQL call
``launchPartitionBackfill``) is run by the backfill daemon's own iteration, and afterwards every record is in
the warehouse exactly once, no day is failed and the alert is resolved. Overlapping backfills and bad ranges
are refused. The fake HubSpot over real HTTP, the real ingest path, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.alerts.incidents import list_incidents
from integration_assets.alerts.notifier import Notifier
from integration_assets.cli.backfill import backfill
from integration_assets.cli.status import collect_status, render
from integration_assets.policies import load_policies
from integration_assets.sandbox.fakes._server import Fault, LoggedRequest
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sensors import partitions as p
from integration_assets.sensors.alert_rules import partition_failure_alerts, run_failure_alert, run_recovered
from integration_assets.warehouse.schema import CANONICAL_TABLES, loads
from integration_assets.warehouse.schema.api_budget import api_budget
from tests.acceptance.conftest import launched_id, run_backfill

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"]
DOWN = DAYS[1:4]
ASSET = dg.AssetKey(["api", "hubspot", "companies"])
JOB = "api_hubspot_companies"


def _seed(fake: FakeHubSpot) -> dict[str, str]:
    """Two companies modified on each day: id -> day."""
    out = {}
    for n, day in enumerate(DAYS):
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        for h in (3, 15):
            rid = fake.add(
                "companies",
                {"name": f"Company {n}-{h}", "domain": f"c{n}-{h}.example.com", "country": "Germany"},
                modified=start + timedelta(hours=h),
            )
            out[rid] = day
    return out


def _outage(req: LoggedRequest) -> Fault | None:
    # HubSpot down for maintenance: 503 with a Retry-After past what a run waits, so each run fails at once
    # as transient instead of sleeping through its retries.
    return Fault(503, {"status": "error", "message": "Service Unavailable"}, retry_after=3600)


def _scheduled_run(instance: dg.DagsterInstance, day: str) -> list[str]:
    """What the schedule's run of one day does (the partition job, in process), then what the run-failure and
    run-recovery sensors do with it. Returns their actions."""
    from integration_assets.definitions import defs

    job = defs.resolve_job_def(JOB)
    res = job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
    with Notifier.from_env() as alerts:
        if res.success:
            return [run_recovered(res.dagster_run, alerts)]
        failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
        return [
            run_failure_alert(
                res.dagster_run, failure.message or "", [failure.step_key or ""], alerts, load_policies()
            )
        ]


def _outage_is_over(engine: sa.Engine) -> None:
    """The hour HubSpot's Retry-After asked for has passed: the shared budget's pause is over."""
    with engine.begin() as conn:
        conn.execute(sa.update(api_budget).values(paused_until=None))


def test_an_outage_is_repaired_by_one_backfill_of_the_failed_days(
    hubspot: FakeHubSpot, instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    companies = _seed(hubspot)
    now = datetime(2026, 10, 6, 9, tzinfo=UTC)  # the morning after the last day
    policies = load_policies()
    actions = []
    for day in DAYS[:4]:
        hubspot.fault = _outage if day in DOWN else None
        if day not in DOWN:
            _outage_is_over(engine)
        actions += _scheduled_run(instance, day)
    # The run-failure alert fired once for the three failed runs (the same incident, seen three times).
    assert actions.count(f"opened run:{JOB}") == 1 and actions.count(f"deduplicated run:{JOB}") == 2
    run_incident = next(i for i in list_incidents("open", engine=engine) if i.key == f"run:{JOB}")
    assert run_incident.fire_count == 3

    health = p.partition_states(instance, "hubspot", "companies", now=now)
    assert health.failed == tuple(DOWN)
    assert health.command() is not None and "--only-failed" in health.command()  # type: ignore[operator]
    # `integration-assets status` lists them with the exact command that repairs them.
    # The API is back; the next scheduled run (the last day) succeeds and resolves the run-failure alert, but
    # the three days stay failed, and that is what the partition alert is about.
    hubspot.fault = None
    _outage_is_over(engine)
    assert _scheduled_run(instance, DAYS[4]) == [f"resolved run:{JOB}"]

    shown = {r["asset"]: r for r in collect_status(instance=instance, now=now)["partitions"]}
    row = shown["api/hubspot/companies"]
    assert row["failed"] == DOWN and row["missing"][-1] == "2026-09-30"  # never pulled before the 1st
    assert row["command"] == (
        "integration-assets backfill hubspot companies --from 2026-09-01 --to 2026-10-04 --only-failed --missing"
    )
    with Notifier.from_env() as alerts:
        assert "opened partitions:hubspot/companies" in partition_failure_alerts(
            instance, alerts, policies, now=now
        )
        # a second tick while still failing: the same incident, not a second alert
        assert partition_failure_alerts(instance, alerts, policies, now=now) == []
    open_keys = [i.key for i in list_incidents("open", engine=engine)]
    assert open_keys.count("partitions:hubspot/companies") == 1

    # The API is back: one backfill of the failed days only, from the CLI (the UI's GraphQL call).
    res = CliRunner().invoke(
        backfill, ["hubspot", "companies", "--from", DAYS[0], "--to", DAYS[-1], "--only-failed"]
    )
    assert res.exit_code == 0, res.output
    backfill_id = launched_id(res.output)
    assert f"/runs/b/{backfill_id}" in res.output and "integration-assets status" in res.output
    target = instance.get_backfill(backfill_id)
    assert target is not None and target.is_asset_backfill

    # Launched again over an overlapping range while the first is still requested: refused, naming it.
    again = CliRunner().invoke(backfill, ["hubspot", "companies", "--from", DAYS[3], "--to", DAYS[4]])
    assert again.exit_code != 0
    assert backfill_id in again.output and "2026-10-04" in again.output

    run_backfill(instance, backfill_id)
    assert p.backfill_status(instance, backfill_id) == "COMPLETED_SUCCESS"
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # multi_run: the three days in as few runs as max_partitions_per_run allows
    assert len(runs) == -(-len(DOWN) // policies.partitions.max_partitions_per_run)

    table = CANONICAL_TABLES["companies"]
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(table.c.source_id))]
        written = dict(
            conn.execute(
                sa.select(loads.c.partition_key, sa.func.sum(loads.c.rows_inserted + loads.c.rows_updated))
                .where(loads.c.entity == "companies", loads.c.partition_key.is_not(None))
                .group_by(loads.c.partition_key)
            ).all()
        )
    assert sorted(ids) == sorted(companies)  # every record, exactly once
    assert {k: int(v) for k, v in written.items()} == dict.fromkeys(DAYS, 2)

    health = p.partition_states(instance, "hubspot", "companies", now=now)
    assert health.failed == () and not set(DAYS) & set(health.missing)
    with Notifier.from_env() as alerts:
        assert partition_failure_alerts(instance, alerts, policies, now=now) == [
            "resolved partitions:hubspot/companies"
        ]
    assert "partitions:hubspot/companies" not in [i.key for i in list_incidents("open", engine=engine)]
    after = collect_status(instance=instance, now=now)
    row = next(r for r in after["partitions"] if r["asset"] == "api/hubspot/companies")
    assert row["failed"] == [] and not set(DAYS) & set(row["missing"])
    render(after)  # the screen draws the section


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-08-01", "--to", "2026-09-03"], "before it"),
        (["--from", "2026-10-03", "--to", "2026-10-01"], "is after --to"),
        (["--from", "2026-10-01", "--to", "2099-01-01"], "in the future"),
        (["--from", "2026-10-01", "--to", "nope"], "is not a day"),
    ],
)
def test_bad_ranges_are_refused_with_a_clear_message(args: list[str], message: str) -> None:
    res = CliRunner().invoke(backfill, ["hubspot", "companies", *args])
    assert res.exit_code == 2 and message in res.output, res.output


@pytest.mark.parametrize(
    ("system", "entity", "message"),
    [("shopify", "orders", "unknown source 'shopify'"), ("hubspot", "tickets", "unknown hubspot entity")],
)
def test_unknown_sources_and_entities_are_refused(system: str, entity: str, message: str) -> None:
    res = CliRunner().invoke(backfill, [system, entity, "--from", "2026-10-01", "--to", "2026-10-02"])
    assert res.exit_code == 2 and message in res.output, res.output


def test_only_failed_with_nothing_failed_launches_nothing_and_wait_gives_up_at_its_timeout(
    instance: dg.DagsterInstance,
) -> None:
    res = CliRunner().invoke(
        backfill, ["hubspot", "companies", "--from", DAYS[0], "--to", DAYS[-1], "--only-failed"]
    )
    assert res.exit_code == 0 and "nothing to backfill" in res.output, res.output
    assert instance.get_backfills() == []

    first = CliRunner().invoke(backfill, ["hubspot", "companies", "--from", DAYS[0], "--to", DAYS[1]])
    assert first.exit_code == 0, first.output
    waited = CliRunner().invoke(
        backfill,
        ["hubspot", "companies", "--from", DAYS[1], "--to", DAYS[2], "--wait", "--wait-timeout", "0"],
    )
    assert waited.exit_code == 1 and launched_id(first.output) in waited.output, waited.output
    assert len(instance.get_backfills()) == 1
