"""Fixtures for the Stripe connector: a fake Stripe on a simulated clock, and clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from integration_assets.connectors._retry import HttpRetry
from integration_assets.connectors.stripe import StripeClient
from integration_assets.sandbox.fakes.stripe import FakeStripe

# 2026-09-10 12:00 UTC: the fake's "now" (events older than 2026-08-11 12:00 are gone).
NOW = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)
FAST = HttpRetry(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, max_wait=30.0)


class Clock:
    """A settable wall clock (epoch seconds) shared by the fake and the client."""

    def __init__(self, at: datetime = NOW) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeStripe]:
    with FakeStripe(clock=clock, seed=13) as f:
        assert isinstance(f, FakeStripe)
        yield f


@pytest.fixture
def slept() -> list[float]:
    return []


@pytest.fixture
def make_client(fake: FakeStripe, clock: Clock, slept: list[float]) -> Iterator[Callable[..., StripeClient]]:
    clients: list[StripeClient] = []

    def make(**kw: object) -> StripeClient:
        kw.setdefault("retry", FAST)
        client = StripeClient(fake.url, fake.api_key, clock=clock, sleep=slept.append, **kw)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
