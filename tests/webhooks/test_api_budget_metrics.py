"""The shared API budget's counters on the receiver's /metrics: totals over every process, from the warehouse."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from prometheus_client import generate_latest

from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.policies import ApiBudgetPolicy
from integration_assets.warehouse.api_budget import ApiBudget
from integration_assets.warehouse.db import get_engine
from integration_assets.webhooks.metrics import metrics_registry


def scrape(url: str) -> str:
    return generate_latest(metrics_registry(WebhookMetrics(), lambda: get_engine(url))).decode()


def test_requests_waits_and_429s_per_api(engine: sa.Engine, warehouse_url: str) -> None:
    now = [1_800_000_000.0]

    def sleep(s: float) -> None:
        now[0] += s

    policy = ApiBudgetPolicy(per_window=2, window=timedelta(seconds=10))
    one, two = (ApiBudget(engine, "odoo", policy=policy, clock=lambda: now[0], sleep=sleep) for _ in range(2))
    one.acquire()
    two.acquire()
    two.acquire()  # waits a window
    one.observe(429, {"Retry-After": "1"})
    text = scrape(warehouse_url)
    assert 'integration_api_requests_total{account="default",api="odoo"} 3.0' in text
    assert 'integration_api_budget_waits_total{account="default",api="odoo"} 1.0' in text
    assert 'integration_api_throttled_total{account="default",api="odoo"} 1.0' in text
    assert "# TYPE integration_api_budget_wait_seconds_total counter" in text


def test_unreachable_warehouse_has_no_budget_series() -> None:
    text = scrape("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    assert "integration_pipeline_metrics_up 0.0" in text and "integration_api_requests" not in text
