"""``api/stripe/events`` (assets/stripe_pull.py): daily partitions of Stripe events applied through the event
path, against the fake Stripe over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.assets.files import canonical_key
from integration_assets.assets.stripe_pull import (
    STRIPE_EVENTS_KEY,
    build_stripe_events_asset,
    build_stripe_events_job,
    stripe_partitions_def,
    stripe_pull_definitions,
)
from integration_assets.connectors._retry import HttpRetry
from integration_assets.connectors.stripe import Window
from integration_assets.policies import load_policies
from integration_assets.resources import WarehouseResource
from integration_assets.sandbox.events import charge, payment_intent
from integration_assets.sandbox.fakes.stripe import FakeStripe
from integration_assets.warehouse.schema import payments, processed_events
from tests.outbound import conftest as _outbound
from tests.outbound.conftest import sqlite_template  # noqa: F401 - the fixture below needs it

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
RECENT = [(TODAY - timedelta(days=d)).strftime("%Y-%m-%d") for d in (3, 2)]  # inside the 30 days
_FAST = HttpRetry(max_attempts=2, backoff_base=0.01, backoff_cap=0.02, max_wait=5.0)
OLD = (TODAY - timedelta(days=40)).strftime("%Y-%m-%d")  # past Stripe's event retention

# The SQLite warehouse copied from a migrated template (tests/outbound/conftest.py): no migrations per test.
warehouse_url = _outbound.warehouse_url


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as i:
        yield i


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    with FakeStripe(seed=11) as f:
        assert isinstance(f, FakeStripe)
        monkeypatch.setenv("STRIPE_BASE_URL", f.url)
        monkeypatch.setenv("STRIPE_API_KEY", f.api_key)
        yield f


def _sales(fake: FakeStripe, day: str, n: int) -> list[dict[str, Any]]:
    start = Window.day(day).gte
    made = []
    for i in range(n):
        at = start + 1800 * i
        pi_id, ch_id = fake.new_id("pi"), fake.new_id("ch")
        pi = payment_intent(pi_id, 900 + i, "usd", "succeeded", at, customer=None, charge=ch_id, metadata={})
        made.append(fake.emit("payment_intent.succeeded", pi, created=at))
        made.append(
            fake.emit("charge.succeeded", charge(ch_id, pi_id, 900 + i, "usd", at, customer=None), created=at)
        )
    return made


def _run(instance: dg.DagsterInstance, *, key: str | None = None, keys: tuple[str, str] | None = None) -> Any:
    tags = {}
    if keys is not None:  # one run over a range, as a multi_run backfill launches it
        tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[1]}
    return dg.materialize(
        [build_stripe_events_asset(load_policies())],
        resources={"warehouse": WarehouseResource()},
        instance=instance,
        partition_key=key,
        tags=tags,
        raise_on_error=False,
    )


def _days(res: Any, key: dg.AssetKey = STRIPE_EVENTS_KEY) -> dict[str | None, dict[str, Any]]:
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in res.get_asset_materialization_events()
        if e.asset_key == key
    }


def test_partitions_job_and_policy() -> None:
    policies = load_policies()
    pdef = stripe_partitions_def(policies)
    assert pdef.start.date() == policies.partitions.start_for("stripe")
    assert pdef.get_last_partition_key() == TODAY.strftime("%Y-%m-%d")  # today's partition exists
    asset = build_stripe_events_asset(policies)
    assert asset.backfill_policy == dg.BackfillPolicy.multi_run(policies.partitions.max_partitions_per_run)
    assert build_stripe_events_job(policies).name == "api_stripe_events"


def _schedule(policies: Any) -> dg.ScheduleDefinition:
    [schedule] = stripe_pull_definitions(policies).schedules or []
    assert isinstance(schedule, dg.ScheduleDefinition)
    return schedule


def test_the_schedule_is_running_once_a_key_is_set_and_asks_today_late_edits_and_missed_days(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies = load_policies()
    stopped = _schedule(policies)
    assert stopped.default_status == dg.DefaultScheduleStatus.STOPPED
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_configured")
    schedule = _schedule(policies)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING

    ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=TODAY + timedelta(hours=5))
    keys = [r.partition_key for r in schedule(ctx)]  # type: ignore[union-attr]

    start = policies.partitions.start_for("stripe")
    expected = [TODAY - timedelta(days=d) for d in range(1 + policies.partitions.late_edits + 7)]
    assert keys == [d.strftime("%Y-%m-%d") for d in expected if d.date() >= start]  # nothing ran yet


def test_a_range_run_applies_each_day_once_and_a_rerun_counts_duplicates(
    fake: FakeStripe, warehouse_url: str, engine: sa.Engine, instance: dg.DagsterInstance
) -> None:
    made = {day: _sales(fake, day, n) for day, n in zip(RECENT, (3, 2), strict=True)}
    customer = {
        "id": fake.new_id("cus"),
        "object": "customer",
        "email": None,
        "created": Window.day(RECENT[0]).gte,
    }
    fake.emit("customer.created", customer, created=Window.day(RECENT[0]).gte + 5)  # no contract: not pulled

    first = _run(instance, keys=(RECENT[0], RECENT[1]))

    assert first.success
    days = _days(first)
    assert {
        d: (m["source"], m["events_pulled"], m["applied"], m["duplicates"], m["other_objects_skipped"])
        for d, m in days.items()
        if d
    } == {RECENT[0]: ("events", 6, 6, 0, 1), RECENT[1]: ("events", 4, 4, 0, 0)}
    payments_mat = _days(first, canonical_key("payments"))
    assert payments_mat[None]["events_applied"] == 10 and payments_mat[None]["dagster/row_count"] == 10
    checked = {e.asset_key for e in first.get_asset_check_evaluations()}
    assert checked == {canonical_key("payments")}  # its checks evaluated in the same run (checks.inrun)
    with engine.connect() as conn:
        ids = set(conn.scalars(sa.select(processed_events.c.event_id)))
    assert ids == {f"stripe:{e['id']}" for evs in made.values() for e in evs}

    again = _run(instance, key=RECENT[0])
    assert again.success
    day = _days(again)[RECENT[0]]
    assert (day["events_pulled"], day["applied"], day["duplicates"], day["dead_lettered"]) == (6, 0, 6, 0)
    assert canonical_key("payments") not in {e.asset_key for e in again.get_asset_materialization_events()}


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the DB plays no part here
def test_a_day_past_the_event_retention_is_pulled_from_the_object_lists(
    fake: FakeStripe, warehouse_url: str, engine: sa.Engine, instance: dg.DagsterInstance
) -> None:
    _sales(fake, OLD, 2)

    res = _run(instance, key=OLD)

    assert res.success
    day = _days(res)[OLD]
    assert (day["source"], day["events_pulled"], day["applied"]) == ("objects", 4, 4)
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(payments)) == 4


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the DB plays no part here
def test_an_outage_fails_the_partition_as_transient_and_the_retry_completes_it(
    fake: FakeStripe,
    warehouse_url: str,
    engine: sa.Engine,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("integration_assets.connectors.stripe.client.DEFAULT_RETRY", _FAST)
    _sales(fake, RECENT[1], 2)
    fake.down()

    failed = _run(instance, key=RECENT[1])

    assert not failed.success
    failure = failed.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and failure.metadata["kind"].value == "transient"
    assert _days(failed) == {}
    fake.up()
    retried = _run(instance, key=RECENT[1])
    assert retried.success and _days(retried)[RECENT[1]]["applied"] == 4


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the DB plays no part here
def test_a_revoked_key_fails_as_permanent(
    fake: FakeStripe, warehouse_url: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_revoked")
    res = _run(instance, key=RECENT[1])
    assert not res.success
    failure = res.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and failure.metadata["kind"].value == "terminal"
    assert "sk_test_revoked" not in (failure.description or "")
