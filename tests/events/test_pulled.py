"""Webhook gap-fill (issue 13): events pulled from the Stripe API go through the same drain and
``processed_events`` ledger as webhook deliveries, so each event applies once, in either order.

Real pieces throughout: the webhook receiver under uvicorn, the fake Stripe delivering signed webhooks and
answering ``/v1/events``, the Stripe connector, the SQL queue and the warehouse (SQLite and PostgreSQL).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from integration_assets.connectors.stripe import StripeClient, Window
from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.events.drain import DrainReport, drain
from integration_assets.events.pulled import (
    apply_pulled,
    event_messages,
    pull_queue_name,
    stripe_object_messages,
)
from integration_assets.queue import open_queue
from integration_assets.sandbox.events import charge, payment_intent, refund
from integration_assets.sandbox.fakes.stripe import FakeStripe
from integration_assets.warehouse.schema import dead_letters, payments, processed_events
from integration_assets.webhooks.app import create_app
from integration_assets.webhooks.receive import WebhookConfig
from tests.outbound import conftest as _outbound
from tests.outbound.conftest import sqlite_template  # noqa: F401 - the fixture below needs it
from tests.support.receiver import serving

# The SQLite warehouse copied from a migrated template (tests/outbound/conftest.py): no migrations per test.
warehouse_url = _outbound.warehouse_url

SECRET = "whsec_gap_fill_test_secret"
DAY = Window.day("2026-11-20")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # the fake's clock: DAY is 6 days ago, inside the 30


def _free_url() -> str:
    """A URL where nothing listens (the receiver is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhooks/stripe"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(webhook_secret=SECRET, clock=NOW.timestamp, seed=7) as f:
        assert isinstance(f, FakeStripe)
        yield f


@pytest.fixture
def webhook_queue() -> str:
    return f"wh{uuid.uuid4().hex[:10]}"


def _receiver(warehouse_url: str, queue_name: str) -> Any:
    return create_app(
        queue_url=f"sql?name={queue_name}",
        config=WebhookConfig(secrets={"stripe": (SECRET,)}, enqueue_timeout_s=10.0),
    )


def _drain_webhooks(warehouse_url: str, engine: sa.Engine, queue_name: str) -> DrainReport:
    queue = open_queue(
        f"sql?name={queue_name}", warehouse_url=warehouse_url, dead_letter_sink=write_event_dead_letters
    )
    try:
        return drain(queue, engine=engine)
    finally:
        queue.close()


def _sale(fake: FakeStripe, n: int, at: int) -> list[dict[str, Any]]:
    """A payment's life: the PaymentIntent processing then succeeded, its charge; every third refunded."""
    pi_id, ch_id = fake.new_id("pi"), fake.new_id("ch")
    amount = 1000 + n
    meta = {"order_id": f"SO{n:04d}"}
    events = [
        fake.emit(
            "payment_intent.processing",
            payment_intent(pi_id, amount, "eur", "processing", at, customer=None, charge=None, metadata=meta),
            created=at,
        ),
        fake.emit(
            "payment_intent.succeeded",
            payment_intent(pi_id, amount, "eur", "succeeded", at, customer=None, charge=ch_id, metadata=meta),
            created=at + 1,
        ),
        fake.emit(
            "charge.succeeded", charge(ch_id, pi_id, amount, "eur", at + 1, customer=None), created=at + 1
        ),
    ]
    if n % 3 == 0:
        re_id = fake.new_id("re")
        events.append(
            fake.emit(
                "charge.refund.updated",
                refund(re_id, ch_id, pi_id, amount, "eur", "succeeded", at + 60),
                created=at + 60,
            )
        )
    return events


def _payments(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    p = payments.c
    with engine.connect() as conn:
        return {
            r.source_id: (r.object_type, r.status, r.amount, r.order_id, r.event_id)
            for r in conn.execute(
                sa.select(p.source_id, p.object_type, p.status, p.amount, p.order_id, p.event_id)
            )
        }


def _ledger(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(processed_events.c.event_id, processed_events.c.outcome)).all()
    return {r.event_id: r.outcome for r in rows}


def _pull(fake: FakeStripe, engine: sa.Engine, window: Window = DAY) -> Any:
    with StripeClient(fake.url, fake.api_key, clock=fake.clock) as client:
        events = list(client.events(window))
    return apply_pulled(
        event_messages("stripe", events), engine=engine, queue_name=pull_queue_name("stripe", "2026-11-20")
    )


def test_gap_receiver_down_then_pull_then_redeliveries_change_nothing(
    fake: FakeStripe, warehouse_url: str, engine: sa.Engine, webhook_queue: str
) -> None:
    fake.endpoint(_free_url())  # the receiver is down while Stripe makes the events
    made = [e for n in range(12) for e in _sale(fake, n, DAY.gte + 3600 * n)]
    assert len(fake.pending()) == len(made) == 40
    assert all(d.status is None for d in fake.deliveries)

    pulled = _pull(fake, engine)

    assert pulled.pulled == 40 and pulled.applied + pulled.stale == 40
    assert pulled.duplicates == 0 and pulled.dead_lettered == 0 and pulled.left_in_queue == 0
    ledger = _ledger(engine)
    assert set(ledger) == {f"stripe:{e['id']}" for e in made}
    after_pull = _payments(engine)
    assert len(after_pull) == 12 * 2 + 4  # 12 PaymentIntents, 12 charges, 4 refunds
    assert {v[1] for k, v in after_pull.items() if k.startswith("pi_")} == {"succeeded"}

    # The receiver is back: Stripe's retries arrive, are queued, and the drain finds every id in the ledger.
    with serving(_receiver(warehouse_url, webhook_queue)) as base:
        fake.endpoint(f"{base}/webhooks/stripe")
        statuses = fake.retry_deliveries()
    assert set(statuses.values()) == {200} and fake.pending() == []
    report = _drain_webhooks(warehouse_url, engine, webhook_queue)

    assert report.totals.events_in == 40 and report.totals.duplicates == 40
    assert report.totals.applied == report.totals.stale == report.totals.dead_lettered == 0
    assert _payments(engine) == after_pull
    assert _ledger(engine) == ledger

    # Pulling the same partition again changes nothing either.
    again = _pull(fake, engine)
    assert again.duplicates == 40 and again.applied == 0 and _payments(engine) == after_pull


def test_a_pulled_copy_after_the_webhook_is_a_duplicate(
    fake: FakeStripe, warehouse_url: str, engine: sa.Engine, webhook_queue: str
) -> None:
    with serving(_receiver(warehouse_url, webhook_queue)) as base:
        fake.endpoint(f"{base}/webhooks/stripe")
        made = [e for n in range(3) for e in _sale(fake, n, DAY.gte + 100 * n)]
        late = fake.emit(  # one delivery fails: this event only arrives through the pull
            "payment_intent.canceled",
            payment_intent(
                fake.new_id("pi"),
                700,
                "eur",
                "canceled",
                DAY.gte + 500,
                customer=None,
                charge=None,
                metadata={},
            ),
            created=DAY.gte + 500,
            deliver=False,
        )
    first = _drain_webhooks(warehouse_url, engine, webhook_queue)
    assert first.totals.events_in == len(made) and first.totals.dead_lettered == 0
    before = _payments(engine)

    pulled = _pull(fake, engine)

    assert pulled.pulled == len(made) + 1
    assert pulled.duplicates == len(made) and pulled.applied == 1  # only the missed one applies
    after = _payments(engine)
    assert {k: v for k, v in after.items() if k != late["data"]["object"]["id"]} == before
    assert after[late["data"]["object"]["id"]][1] == "canceled"


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the DB plays no part here
def test_an_event_that_fails_its_contract_is_dead_lettered_once_whichever_copy_comes_first(
    fake: FakeStripe, warehouse_url: str, engine: sa.Engine, webhook_queue: str
) -> None:
    fake.endpoint(_free_url())
    bad = payment_intent(
        fake.new_id("pi"), 10, "eur", "teleported", DAY.gte, customer=None, charge=None, metadata={}
    )
    event = fake.emit("payment_intent.teleported", bad, created=DAY.gte + 5)

    pulled = _pull(fake, engine)
    assert pulled.dead_lettered == 1 and pulled.applied == 0

    with serving(_receiver(warehouse_url, webhook_queue)) as base:
        fake.endpoint(f"{base}/webhooks/stripe")
        fake.retry_deliveries()
    report = _drain_webhooks(warehouse_url, engine, webhook_queue)
    assert report.totals.duplicates == 1 and report.totals.dead_lettered == 0
    with engine.connect() as conn:
        rows = conn.execute(sa.select(dead_letters.c.natural_key, dead_letters.c.status)).all()
    assert [(r.natural_key, r.status) for r in rows] == [(f"stripe:{event['id']}", "pending")]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the DB plays no part here
def test_object_snapshots_for_a_range_past_the_event_retention(fake: FakeStripe, engine: sa.Engine) -> None:
    old = Window.day("2026-09-01")  # 86 days before the fake's now: no events left
    for n in range(4):
        _sale(fake, n, old.gte + 600 * n)
    with StripeClient(fake.url, fake.api_key, clock=fake.clock) as client:
        assert not client.events_complete(old) and list(client.events(old)) == []
        objects = [o for kind in ("payment_intents", "charges", "refunds") for o in client.objects(kind, old)]  # type: ignore[arg-type]
    assert len(objects) == 4 + 4 + 2

    as_of = int(NOW.timestamp())
    first = apply_pulled(
        stripe_object_messages(objects, as_of=as_of), engine=engine, queue_name="pull.stripe.t1"
    )
    assert first.applied == 10
    rows = _payments(engine)
    assert {v[1] for k, v in rows.items() if k.startswith("pi_")} == {"succeeded"}

    # Listing the same unchanged objects later is a duplicate, whatever the listing time.
    again = apply_pulled(
        stripe_object_messages(objects, as_of=as_of + 3600), engine=engine, queue_name="pull.stripe.t1"
    )
    assert again.duplicates == 10 and again.applied == 0 and _payments(engine) == rows


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the DB plays no part here
def test_a_run_that_died_after_publishing_is_completed_by_the_rerun(
    fake: FakeStripe, warehouse_url: str, engine: sa.Engine
) -> None:
    for n in range(2):
        _sale(fake, n, DAY.gte + 60 * n)
    with StripeClient(fake.url, fake.api_key, clock=fake.clock) as client:
        messages = event_messages("stripe", client.events(DAY))
    name = pull_queue_name("stripe", "2026-11-20")
    queue = open_queue(
        f"sql?name={name}", warehouse_url=warehouse_url, dead_letter_sink=write_event_dead_letters
    )
    try:
        queue.publish_many(messages)  # ... and the run died before its drain
    finally:
        queue.close()
    assert _ledger(engine) == {}

    rerun = apply_pulled(messages, engine=engine, queue_name=name)

    n = len(messages)
    assert n == 7  # two sales, the first refunded
    assert (rerun.pulled, rerun.already_queued, rerun.applied + rerun.stale, rerun.left_in_queue) == (
        n,
        n,
        n,
        0,
    )
    assert rerun.drain.totals.events_in == n  # each event drained once
    assert len(_ledger(engine)) == n
