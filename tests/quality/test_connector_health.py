"""Connector HTTP counts and the sustained-429/5xx rule, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from integration_assets.policies import load_policies
from integration_assets.quality.connector_health import (
    http_error_health,
    prune,
    record_http_status,
    status_class,
)
from integration_assets.warehouse.db import get_engine
from tests.quality.factories import T0


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 204, 302, 404, 429, 500, 503, None)] == [
        "2xx",
        "2xx",
        "3xx",
        "4xx",
        "429",
        "5xx",
        "5xx",
        "transport",
    ]


def test_a_burst_is_not_sustained_but_minutes_of_429s_are(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    policy = load_policies().connector_http_errors
    now = T0 + timedelta(minutes=10)
    # One minute with 12 throttled calls: the client's backoff handles that.
    record_http_status("hubspot", 429, engine=engine, at=now - timedelta(minutes=1), count=12)
    record_http_status("hubspot", 200, engine=engine, at=now - timedelta(minutes=1), count=3)
    with engine.connect() as conn:
        [h] = http_error_health(conn, policy, now=now)
    assert (h.requests, h.errors, h.error_minutes, h.sustained, h.cleared) == (15, 12, 1, False, False)

    for m in (2, 3, 4):
        record_http_status("hubspot", 503, engine=engine, at=now - timedelta(minutes=m), count=2)
    record_http_status("odoo", 200, engine=engine, at=now - timedelta(minutes=2), count=50)
    record_http_status("odoo", None, engine=engine, at=now - timedelta(minutes=2))
    with engine.connect() as conn:
        health = {h.source_system: h for h in http_error_health(conn, policy, now=now)}
    assert health["hubspot"].sustained and health["hubspot"].by_class == {"2xx": 3, "429": 12, "5xx": 6}
    assert not health["odoo"].sustained and health["odoo"].cleared

    # Twenty minutes later the window only holds successes; old counts are pruned after the retention.
    later = now + timedelta(minutes=20)
    record_http_status("hubspot", 200, engine=engine, at=later, count=5)
    with engine.connect() as conn:
        [h] = [x for x in http_error_health(conn, policy, now=later) if x.source_system == "hubspot"]
    assert h.cleared and not h.sustained
    with engine.begin() as conn:
        assert prune(conn, policy, now=later + timedelta(days=8)) == 8
