"""Issue 13 acceptance, Stripe's half of the outage: the API answers 503 for three days of scheduled event pulls,
those days fail; when it is back, one backfill of the failed days is launched through GraphQL
``launchPartitionBackfill`` exactly as the UI sends it and run by the backfill daemon's iteration; every event
is applied once (the processed_events ledger) and no day is left failed. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.assets.stripe_pull import STRIPE_EVENTS_JOB, STRIPE_EVENTS_KEY
from integration_assets.connectors._retry import HttpRetry
from integration_assets.connectors.stripe import Window
from integration_assets.sandbox.events import charge, payment_intent
from integration_assets.sandbox.fakes.stripe import FakeStripe
from integration_assets.sensors import partitions as p
from integration_assets.warehouse.schema import processed_events
from tests.acceptance.conftest import run_backfill

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAYS = [(TODAY - timedelta(days=d)).strftime("%Y-%m-%d") for d in (6, 5, 4, 3, 2)]  # inside the 30 days
DOWN = DAYS[1:4]
_FAST = HttpRetry(max_attempts=2, backoff_base=0.01, backoff_cap=0.02, max_wait=5.0)


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    with FakeStripe(seed=13) as f:
        assert isinstance(f, FakeStripe)
        monkeypatch.setenv("STRIPE_BASE_URL", f.url)
        monkeypatch.setenv("STRIPE_API_KEY", f.api_key)
        monkeypatch.setattr("integration_assets.connectors.stripe.client.DEFAULT_RETRY", _FAST)
        yield f


def _sales(fake: FakeStripe, day: str) -> list[str]:
    """Two payments on ``day``: four events; their ids."""
    start = Window.day(day).gte
    ids = []
    for i in range(2):
        at = start + 3600 * (i + 1)
        pi_id, ch_id = fake.new_id("pi"), fake.new_id("ch")
        pi = payment_intent(pi_id, 900 + i, "usd", "succeeded", at, customer=None, charge=ch_id, metadata={})
        ids.append(fake.emit("payment_intent.succeeded", pi, created=at, deliver=False)["id"])
        ch = charge(ch_id, pi_id, 900 + i, "usd", at, customer=None)
        ids.append(fake.emit("charge.succeeded", ch, created=at, deliver=False)["id"])
    return ids


def test_three_days_of_failed_event_pulls_are_repaired_by_one_backfill_launched_as_the_ui_does(
    stripe: FakeStripe, instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    from integration_assets.definitions import defs

    events = [e for day in DAYS for e in _sales(stripe, day)]
    job = defs.resolve_job_def(STRIPE_EVENTS_JOB)
    for day in DAYS:
        if day in DOWN:
            stripe.down()
        else:
            stripe.up()
        res = job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False)
        assert res.success is (day not in DOWN)
    stripe.up()
    assert p.partition_states(instance, "stripe", "events").failed == tuple(DOWN)

    with p.workspace_for(instance) as process:
        backfill_id = p.launch_backfill(process, STRIPE_EVENTS_KEY, DOWN, title="stripe outage")
    run_backfill(instance, backfill_id)

    assert p.partition_states(instance, "stripe", "events").failed == ()
    with engine.connect() as conn:
        applied = [
            r[0]
            for r in conn.execute(
                sa.select(processed_events.c.event_id).where(processed_events.c.source == "stripe")
            )
        ]
    assert sorted(applied) == sorted(f"stripe:{e}" for e in events)  # every event, exactly once
