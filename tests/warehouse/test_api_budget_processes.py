"""Two processes pulling from a rate-limited HubSpot at once, through one budget in the warehouse (issue 13
acceptance: "two processes pulling at once stay within the limit"), on SQLite and PostgreSQL.

Real processes (forked), a real database, real HTTP to the fake, the real clock; a 1 s window keeps it short.
"""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import sqlalchemy as sa

from integration_assets.policies import ApiBudgetPolicy
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot

PER_WINDOW, WINDOW_S, MARGIN_S = 10, 1.0, 0.25
REQUESTS_EACH = 12


def pull(url: str, base_url: str, token: str, priority: str) -> list[float]:
    """One process: REQUESTS_EACH pages through HttpClient with the shared budget; the budget's grant times."""
    from integration_assets.connectors._http import HttpClient
    from integration_assets.connectors.hubspot.errors import classify_hubspot
    from integration_assets.warehouse.api_budget import ApiBudget
    from integration_assets.warehouse.db import get_engine

    policy = ApiBudgetPolicy(per_window=PER_WINDOW, window=timedelta(seconds=WINDOW_S), backfill_share=0.5)
    engine = get_engine(url)
    engine.dispose(close=False)  # a forked child: never reuse the parent's pooled connections
    budget = ApiBudget(engine, "hubspot", policy=policy, margin_s=MARGIN_S)
    granted: list[float] = []
    with HttpClient(
        "hubspot",
        base_url,
        headers={"Authorization": f"Bearer {token}"},
        classify=classify_hubspot,
        api_budget=budget,
        priority=priority,  # type: ignore[arg-type]
    ) as http:
        for _ in range(REQUESTS_EACH):
            http.request("GET", "/crm/v3/objects/contacts", params={"limit": 10})
            assert budget.last_grant_at is not None
            granted.append(budget.last_grant_at)
    return granted


def test_two_processes_stay_within_the_limit(engine: sa.Engine, warehouse_url: str) -> None:
    fake = FakeHubSpot()
    fake.enforce_rate_limit(PER_WINDOW, WINDOW_S)
    fake.seed(contacts=30)
    with fake:
        # fork: a spawned interpreter takes seconds to import the package; the child opens its own connections
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            results = pool.starmap(
                pull,
                [
                    (warehouse_url, fake.url, fake.token, "live"),
                    (warehouse_url, fake.url, fake.token, "backfill"),
                ],
            )
        statuses = fake.statuses()
    assert statuses.count(200) == 2 * REQUESTS_EACH and 429 not in statuses
    granted = sorted(results[0] + results[1])
    # The budget's own invariant: never more than PER_WINDOW grants in any window it counts over.
    for t in granted:
        assert sum(1 for g in granted if t <= g < t + WINDOW_S + MARGIN_S) <= PER_WINDOW
    # It had to hold requests back: 24 requests at 10 per window span at least two windows.
    assert granted[-1] - granted[0] >= 2 * WINDOW_S
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT granted_total FROM api_budget")).scalar_one() == 2 * REQUESTS_EACH
