"""HttpClient with the shared API budget against the HubSpot fake keeping a rolling limit, on a simulated clock
(the fake, the budget and the client's sleeps share it): the budget holds requests back instead of drawing
429s, follows HubSpot's rate-limit headers when our policy is looser than the account, and a 429 with
Retry-After pauses every client of the API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from integration_assets.connectors._http import HttpClient
from integration_assets.connectors._retry import HttpRetry, RetriesExhausted
from integration_assets.connectors.hubspot.errors import classify_hubspot
from integration_assets.policies import ApiBudgetPolicy
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.warehouse.api_budget import ApiBudget, BudgetExceeded


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeHubSpot]:
    f = FakeHubSpot(clock=clock)
    f.seed(contacts=5)
    with f:
        yield f


def client(fake: FakeHubSpot, budget: ApiBudget, clock: Clock, priority: str = "live") -> HttpClient:
    return HttpClient(
        "hubspot",
        fake.url,
        headers={"Authorization": f"Bearer {fake.token}"},
        classify=classify_hubspot,
        retry=HttpRetry(max_attempts=3, max_wait=60.0, retry_after_jitter=0.0),
        sleep=clock.sleep,
        clock=clock,
        api_budget=budget,
        priority=priority,  # type: ignore[arg-type]
    )


def policy(per_window: int) -> ApiBudgetPolicy:
    return ApiBudgetPolicy(per_window=per_window, window=timedelta(seconds=10))


def get(http: HttpClient) -> int:
    return http.request("GET", "/crm/v3/objects/contacts", params={"limit": 2}).status_code


def test_the_budget_holds_requests_back_instead_of_drawing_429s(
    engine: sa.Engine, fake: FakeHubSpot, clock: Clock
) -> None:
    fake.enforce_rate_limit(3, 10.0)
    budget = ApiBudget(engine, "hubspot", policy=policy(3), clock=clock, sleep=clock.sleep, margin_s=0.2)
    with client(fake, budget, clock) as http:
        assert [get(http) for _ in range(7)] == [200] * 7
        assert http.calls == 7 and http.budget_wait_s == pytest.approx(2 * 10.2)
    assert 429 not in fake.statuses()
    assert budget.stats().waits == 2 and budget.stats().requests == 7


def test_hubspot_headers_tighten_a_looser_policy(engine: sa.Engine, fake: FakeHubSpot, clock: Clock) -> None:
    # Our policy allows 5 per window, the account only 3: X-HubSpot-RateLimit-Max/-Remaining tell us.
    fake.enforce_rate_limit(3, 10.0)
    budget = ApiBudget(engine, "hubspot", policy=policy(5), clock=clock, sleep=clock.sleep, margin_s=0.2)
    with client(fake, budget, clock) as http:
        assert [get(http) for _ in range(6)] == [200] * 6
    assert 429 not in fake.statuses()
    assert budget.stats().waits == 1


def test_a_429_with_retry_after_pauses_every_client(
    engine: sa.Engine, fake: FakeHubSpot, clock: Clock
) -> None:
    one = ApiBudget(engine, "hubspot", policy=policy(100), clock=clock, sleep=clock.sleep)
    other = ApiBudget(engine, "hubspot", policy=policy(100), clock=clock, sleep=clock.sleep)
    fake.throttle_next(1, retry_after=7)
    with client(fake, one, clock) as a:
        start = clock.now
        assert get(a) == 200  # 429, then the retry after Retry-After
        assert clock.now - start == pytest.approx(7.0, abs=0.01)
    assert one.stats().throttled == 1
    fake.throttle_next(1, retry_after=30)
    with client(fake, one, clock) as a, client(fake, other, clock, "backfill") as b:
        a.retry = HttpRetry(max_attempts=1)  # give up at the 429: its pause is what the other client sees
        with pytest.raises(RetriesExhausted):
            get(a)
        start = clock.now
        assert get(b) == 200  # another "process" waits out the pause before sending anything
        assert clock.now - start == pytest.approx(30.0, abs=0.01)
        assert other.stats().waits == 1 and other.stats().throttled == 0
    assert fake.statuses() == [429, 200, 429, 200]


def test_a_wait_longer_than_max_wait_fails_as_transient(
    engine: sa.Engine, fake: FakeHubSpot, clock: Clock
) -> None:
    budget = ApiBudget(engine, "hubspot", policy=policy(100), clock=clock, sleep=clock.sleep)
    budget.observe(429, {"Retry-After": "600"})
    with client(fake, budget, clock) as http, pytest.raises(BudgetExceeded, match="more than the 60 s"):
        get(http)
    assert fake.statuses() == []
