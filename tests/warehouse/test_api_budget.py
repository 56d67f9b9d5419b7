"""The shared API budget (warehouse/api_budget.py) on a simulated clock, on SQLite and PostgreSQL.

Each ``ApiBudget`` here stands for a process: they share nothing but the warehouse row.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from integration_assets.policies import ApiBudgetPolicy
from integration_assets.warehouse.api_budget import (
    ApiBudget,
    BudgetExceeded,
    priority_from_tags,
    totals,
)

# 5 requests per 10 s, a backfill may hold 2 of them while live demand is seen.
POLICY = ApiBudgetPolicy(per_window=5, window=timedelta(seconds=10), backfill_share=0.4)
START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()


class FakeClock:
    """Wall clock for the budget; ``sleep`` advances it (and logs what was slept)."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def budget(engine: sa.Engine, clock: FakeClock, policy: ApiBudgetPolicy = POLICY, **kw: object) -> ApiBudget:
    return ApiBudget(engine, "hubspot", policy=policy, clock=clock, sleep=clock.sleep, margin_s=0.2, **kw)  # type: ignore[arg-type]


def test_per_window_across_instances_and_the_wait_is_exact(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    assert [a.acquire() for _ in range(3)] + [b.acquire() for _ in range(2)] == [0.0] * 5
    # The sixth waits until the first grant leaves the rolling window (10 s + the 0.2 s margin).
    assert b.acquire() == pytest.approx(10.2)
    clock.now += 1.0
    assert a.acquire() == 0.0  # the other four of the first second expired at once with the first
    assert a.stats().requests == 4 and b.stats().requests == 3
    assert b.stats().waits == 1 and b.stats().longest_wait_s == pytest.approx(10.2)


def test_a_rolling_window_never_grants_more_than_per_window_in_any_window(
    engine: sa.Engine, clock: FakeClock
) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    granted: list[float] = []
    for i in range(23):
        clock.now += 0.7 if i % 3 else 2.9  # irregular arrivals, two "processes" taking turns
        (a if i % 2 else b).acquire("backfill" if i % 4 == 0 else "live")
        granted.append(clock.now)
    for t in granted:
        assert sum(1 for g in granted if t <= g < t + 10.2) <= POLICY.per_window


def test_backfill_takes_what_live_leaves_but_the_reserve(engine: sa.Engine, clock: FakeClock) -> None:
    live, backfill = budget(engine, clock), budget(engine, clock)
    assert [live.acquire("live"), live.acquire("outbound")] == [0.0, 0.0]
    # 5 - 2 live - 1 reserve = 2 for the backfill (and never less than its share, 40 % of 5 = 2).
    assert [backfill.acquire("backfill") for _ in range(2)] == [0.0, 0.0]
    with pytest.raises(BudgetExceeded, match="backfill share"):
        backfill.acquire("backfill", max_wait_s=1.0)
    assert live.acquire("live") == 0.0  # the reserve is live's


def test_an_idle_window_is_lent_to_the_backfill_and_a_waiting_live_request_goes_first(
    engine: sa.Engine, clock: FakeClock
) -> None:
    live, backfill = budget(engine, clock), budget(engine, clock)
    for _ in range(4):  # no live demand: all but the reserve
        assert backfill.acquire("backfill") == 0.0
        clock.now += 1.0
    with pytest.raises(BudgetExceeded, match="backfill share"):
        backfill.acquire("backfill", max_wait_s=0.5)
    assert live.acquire("live") == 0.0  # the reserve, at once
    # The window is full: live waits for the oldest backfill grant to leave it (less than one window) ...
    assert live.acquire("live") == pytest.approx(10.2 - 4.0)
    # ... and a token that frees next is not the backfill's: with live holding 2, it may hold 5 - 2 - 1.
    clock.now += 1.0
    with pytest.raises(BudgetExceeded, match="backfill share"):
        backfill.acquire("backfill", max_wait_s=0.5)
    assert live.acquire("live") == 0.0


def test_live_never_waits_more_than_one_window_behind_a_backfill(engine: sa.Engine, clock: FakeClock) -> None:
    live, backfill = budget(engine, clock), budget(engine, clock)
    waits: list[float] = []
    for step in range(60):
        backfill.acquire("backfill")  # a backfill that always wants more
        if step % 3 == 0:
            waits.append(live.acquire("live"))
    assert max(waits) <= 10.2
    assert live.stats().requests == 20


def test_a_429_with_retry_after_pauses_every_instance(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    a.acquire()
    a.observe(429, {"Retry-After": "30", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"})
    assert a.stats().throttled == 1
    assert b.acquire("live") == pytest.approx(30.0)  # Retry-After wins over the interval
    when = email.utils.formatdate(clock.now + 60, usegmt=True)
    b.observe(429, {"retry-after": when})
    with pytest.raises(BudgetExceeded, match="paused by the provider"):
        a.acquire("outbound", max_wait_s=30)
    assert a.acquire("outbound") == pytest.approx(60.0, abs=1.0)  # an HTTP-date has whole seconds


def test_a_429_without_retry_after_waits_hubspots_interval(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    a.observe(
        429, {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Remaining": "0"}
    )
    assert b.acquire() == pytest.approx(10.0)
    b.observe(429, {})  # nothing said: one window of ours
    assert a.acquire() == pytest.approx(10.2)


def test_hubspot_remaining_below_our_count_shrinks_the_window(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    a.acquire()
    # The account has 10 per window of which we use 5; HubSpot says 6 left: someone else used 3.
    a.observe(200, {"X-HubSpot-RateLimit-Max": "10", "X-HubSpot-RateLimit-Remaining": "6"})
    assert b.acquire() == 0.0
    with pytest.raises(BudgetExceeded, match="window full"):
        b.acquire(max_wait_s=5)
    # Remaining at 0 without a 429 fills the window: nothing more until it rolls on.
    clock.now += 10.3
    a.acquire()
    a.observe(200, {"X-HubSpot-RateLimit-Max": "5", "X-HubSpot-RateLimit-Remaining": "0"})
    assert b.acquire() == pytest.approx(10.2)


def test_headers_that_say_no_more_than_we_counted_write_nothing(engine: sa.Engine, clock: FakeClock) -> None:
    a = budget(engine, clock)
    a.acquire()
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT grants FROM api_budget")).scalar_one()
    a.observe(200, {"X-HubSpot-RateLimit-Max": "190", "X-HubSpot-RateLimit-Remaining": "189"})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT grants FROM api_budget")).scalar_one() == before


def test_daily_limit_and_the_backfill_share_of_it(engine: sa.Engine, clock: FakeClock) -> None:
    policy = ApiBudgetPolicy(per_window=5, window=timedelta(seconds=10), daily=8, backfill_share=0.5)
    live, backfill = budget(engine, clock, policy), budget(engine, clock, policy)
    for _ in range(4):
        backfill.acquire("backfill")
        clock.now += 11
    with pytest.raises(BudgetExceeded, match="backfill share of the daily limit"):
        backfill.acquire("backfill", max_wait_s=3600)
    for _ in range(4):
        live.acquire("live")
    with pytest.raises(BudgetExceeded, match="daily limit") as err:
        live.acquire("live", max_wait_s=3600)
    assert err.value.wait_s == pytest.approx(12 * 3600 - 44, abs=1)  # until UTC midnight
    clock.now = datetime(2026, 12, 4, 0, 0, 1, tzinfo=UTC).timestamp()
    assert live.acquire("live") == 0.0 and backfill.acquire("backfill") == 0.0  # a new day


def test_daily_remaining_zero_pauses_until_midnight(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    a.observe(200, {"X-HubSpot-RateLimit-Daily-Remaining": "0"})
    with pytest.raises(BudgetExceeded) as err:
        b.acquire(max_wait_s=300)
    assert err.value.wait_s == pytest.approx(12 * 3600)


def test_provider_daily_count_is_taken_when_it_drifts(engine: sa.Engine, clock: FakeClock) -> None:
    policy = ApiBudgetPolicy(per_window=5, window=timedelta(seconds=10), daily=100)
    a = budget(engine, clock, policy)
    a.acquire()
    a.observe(200, {"X-HubSpot-RateLimit-Daily": "100", "X-HubSpot-RateLimit-Daily-Remaining": "2"})
    clock.now += 11
    a.acquire()
    clock.now += 11
    a.acquire()
    with pytest.raises(BudgetExceeded, match="daily limit"):
        a.acquire(max_wait_s=60)


def test_totals_count_every_instance(engine: sa.Engine, clock: FakeClock) -> None:
    a, b = budget(engine, clock), budget(engine, clock)
    for _ in range(5):
        a.acquire()
    b.acquire()  # waited
    b.observe(429, {"Retry-After": "1"})
    with engine.connect() as conn:
        (t,) = list(totals(conn))
    assert (t.api, t.account, t.requests, t.waits, t.throttled) == ("hubspot", "default", 6, 1, 1)
    assert t.wait_s == pytest.approx(10.2)
    assert b.stats().as_metadata()["hubspot_api_429"] == 1


def test_accounts_are_separate_budgets(engine: sa.Engine, clock: FakeClock) -> None:
    a = budget(engine, clock)
    other = ApiBudget(engine, "hubspot", "portal-2", policy=POLICY, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        a.acquire()
    assert other.acquire() == 0.0


def test_bad_arguments(engine: sa.Engine, clock: FakeClock) -> None:
    a = budget(engine, clock)
    with pytest.raises(ValueError, match="cost"):
        a.acquire(cost=6)
    with pytest.raises(ValueError, match="priority"):
        a.acquire("urgent")  # type: ignore[arg-type]


def test_policy_comes_from_policies_yaml(engine: sa.Engine) -> None:
    assert ApiBudget(engine, "hubspot").policy.per_window == 100
    with pytest.raises(Exception, match="no entry for 'easypost'"):
        ApiBudget(engine, "easypost")


def test_priority_from_run_tags() -> None:
    assert priority_from_tags({}) == "live"
    assert priority_from_tags({"dagster/backfill": "abc"}) == "backfill"
    assert priority_from_tags({"dagster/backfill": "abc", "integration/priority": "live"}) == "live"
    assert priority_from_tags({"integration/priority": "nonsense"}) == "live"
