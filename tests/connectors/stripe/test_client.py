"""The Stripe read connector against the fake Stripe (real HTTP on 127.0.0.1, Stripe's wire format)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from integration_assets.connectors._retry import RetriesExhausted
from integration_assets.connectors.stripe import StripeAuthError, StripeClient, StripeRejected, Window
from integration_assets.sandbox.events import payment_intent
from integration_assets.sandbox.fakes.stripe import FakeStripe
from tests.connectors.stripe.conftest import NOW, Clock
from tests.outbound import conftest as _outbound
from tests.outbound.conftest import sqlite_template  # noqa: F401 - the fixture below needs it

DAY = Window.day("2026-09-09")

# The SQLite warehouse copied from a migrated template (tests/outbound/conftest.py): no migrations per test.
warehouse_url = _outbound.warehouse_url


def _pi(fake: FakeStripe, created: int, status: str = "succeeded") -> dict[str, object]:
    return payment_intent(
        fake.new_id("pi"), 1500, "eur", status, created, customer=None, charge=None, metadata={}
    )


def test_a_day_is_paged_newest_first_and_the_window_is_half_open(
    fake: FakeStripe, make_client: Callable[..., StripeClient]
) -> None:
    inside = [
        fake.emit("payment_intent.succeeded", _pi(fake, DAY.gte), created=DAY.gte + i * 300)
        for i in range(250)
    ]
    fake.emit("payment_intent.succeeded", _pi(fake, DAY.lt), created=DAY.lt)  # next day's first second
    fake.emit("payment_intent.succeeded", _pi(fake, DAY.gte - 1), created=DAY.gte - 1)  # previous day
    client = make_client()

    got = list(client.events(DAY))

    assert [e["id"] for e in got] == [e["id"] for e in reversed(inside)]  # newest first, each once
    assert client.pages == 3  # 100 + 100 + 50
    pages = [r.query for r in fake.requests if r.path == "/v1/events"]
    assert pages[0]["created[gte]"] == [str(DAY.gte)] and pages[0]["created[lt]"] == [str(DAY.lt)]
    assert pages[0]["limit"] == ["100"] and "starting_after" not in pages[0]
    assert pages[1]["starting_after"] == [got[99]["id"]]
    assert client.outside_window == 0


def test_records_the_api_returns_outside_the_window_are_dropped_and_counted(
    fake: FakeStripe, make_client: Callable[..., StripeClient]
) -> None:
    fake.emit("payment_intent.succeeded", _pi(fake, DAY.gte), created=DAY.gte + 10)
    fake.emit("payment_intent.succeeded", _pi(fake, DAY.lt), created=DAY.lt)
    fake.emit("payment_intent.succeeded", _pi(fake, DAY.gte), created=DAY.gte - 5)
    fake.sloppy_window_s = 60
    client = make_client()

    got = list(client.events(DAY))

    assert [e["created"] for e in got] == [DAY.gte + 10]
    assert client.outside_window == 2


def test_events_older_than_30_days_are_gone_but_the_object_lists_still_have_the_objects(
    fake: FakeStripe, make_client: Callable[..., StripeClient], clock: Clock
) -> None:
    old = Window.day("2026-08-01")
    pi = _pi(fake, old.gte + 60, "processing")
    fake.emit("payment_intent.processing", pi, created=old.gte + 60)
    pi = {**pi, "status": "succeeded"}
    fake.emit("payment_intent.succeeded", pi, created=old.gte + 90)
    client = make_client()

    assert not client.events_complete(old)
    assert client.events_complete(DAY)
    assert list(client.events(old)) == []
    objects = list(client.objects("payment_intents", old))
    assert [(o["id"], o["status"]) for o in objects] == [(pi["id"], "succeeded")]  # the current state
    assert list(client.objects("charges", old)) == []
    clock.now = (datetime(2026, 8, 20, tzinfo=UTC)).timestamp()  # earlier "now": the events are kept
    assert len(list(client.events(old))) == 2


def test_an_outage_is_retried_until_the_api_answers_and_429_honours_retry_after(
    fake: FakeStripe, make_client: Callable[..., StripeClient], slept: list[float]
) -> None:
    fake.emit("payment_intent.succeeded", _pi(fake, DAY.gte), created=DAY.gte + 1)
    fake.rate_limit(1, retry_after=3)
    client = make_client()
    assert len(list(client.events(DAY))) == 1
    assert fake.statuses() == [429, 200]
    assert slept and slept[0] >= 3  # never earlier than Stripe asked

    fake.clear_log()
    fake.down()
    with pytest.raises(RetriesExhausted) as err:
        list(make_client().events(DAY))
    assert err.value.last_status == 503 and err.value.attempts == 4
    assert fake.statuses() == [503] * 4
    fake.up()
    assert len(list(make_client().events(DAY))) == 1


def test_a_503_only_inside_a_window_of_the_fake_clock(
    fake: FakeStripe, make_client: Callable[..., StripeClient], clock: Clock
) -> None:
    fake.down(start=NOW.timestamp(), end=(NOW + timedelta(days=3)).timestamp())
    with pytest.raises(RetriesExhausted):
        list(make_client().events(DAY))
    clock.now = (NOW + timedelta(days=3)).timestamp()
    assert list(make_client().events(DAY)) == []


def test_a_revoked_key_is_permanent_and_not_retried(
    fake: FakeStripe, make_client: Callable[..., StripeClient]
) -> None:
    client = StripeClient(fake.url, "sk_test_revoked_key")
    with pytest.raises(StripeAuthError) as err:
        list(client.events(DAY))
    client.close()
    assert err.value.status == 401 and err.value.type == "invalid_request_error"
    assert "sk_test_revoked_key" not in str(err.value)
    assert len(fake.requests) == 1


def test_stripe_should_retry_decides_over_the_status(
    fake: FakeStripe, make_client: Callable[..., StripeClient]
) -> None:
    from integration_assets.sandbox.fakes._server import Fault

    answers = [
        Fault(409, {"error": {"type": "api_error", "message": "lock"}}, {"Stripe-Should-Retry": "true"}),
        None,
    ]
    fake.fault = lambda req: answers.pop(0) if answers else None
    assert list(make_client().events(DAY)) == []
    assert fake.statuses() == [409, 200]

    fake.clear_log()
    fake.fault = lambda req: Fault(
        503, {"error": {"type": "api_error", "message": "no"}}, {"Stripe-Should-Retry": "false"}
    )
    with pytest.raises(StripeRejected) as err:
        list(make_client().events(DAY))
    assert err.value.status == 503 and fake.statuses() == [503]


def test_an_unknown_cursor_is_a_permanent_error_with_stripes_code(
    fake: FakeStripe, make_client: Callable[..., StripeClient]
) -> None:
    client = make_client()
    with pytest.raises(StripeRejected) as err:
        client.http.request("GET", "/v1/events", params={"starting_after": "evt_nope"})
    assert err.value.code == "resource_missing" and err.value.status == 400


def test_the_shared_api_budget_is_asked_before_every_request(
    fake: FakeStripe, make_client: Callable[..., StripeClient], engine: object
) -> None:
    from integration_assets.warehouse.api_budget import ApiBudget

    for i in range(150):
        fake.emit("payment_intent.succeeded", _pi(fake, DAY.gte), created=DAY.gte + i)
    budget = ApiBudget(engine, "stripe")  # type: ignore[arg-type]
    client = make_client(api_budget=budget, priority="backfill")
    assert len(list(client.events(DAY))) == 150
    assert budget.stats().requests == client.http.calls == 2
