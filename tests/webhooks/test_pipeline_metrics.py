"""Pipeline gauges on the receiver's /metrics, from a real warehouse."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from prometheus_client import generate_latest

from integration_assets.ingest.load import ingest_file
from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.warehouse.db import get_engine
from integration_assets.webhooks.app import create_app
from integration_assets.webhooks.metrics import metrics_registry

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def scrape(url: str) -> str:
    return generate_latest(metrics_registry(WebhookMetrics(), lambda: get_engine(url))).decode()


def test_gauges_per_source_entity(warehouse_url: str) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    text = scrape(warehouse_url)
    assert "integration_pipeline_metrics_up 1.0" in text
    assert 'integration_dead_letters_pending{entity="contacts",source_system="hubspot"} 2.0' in text
    assert 'integration_rows_total{entity="contacts",outcome="read",source_system="hubspot"} 6.0' in text
    assert (
        'integration_rows_total{entity="contacts",outcome="quarantined",source_system="hubspot"} 2.0' in text
    )
    assert "integration_last_successful_load_age_seconds{" in text
    assert "integration_dead_letters_oldest_pending_age_seconds{" in text
    assert "# TYPE integration_rows_total counter" in text


def test_unreachable_warehouse_reports_down() -> None:
    text = scrape("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    assert "integration_pipeline_metrics_up 0.0" in text
    assert "integration_dead_letters_pending" not in text


def test_receiver_metrics_endpoint_includes_pipeline_gauges(warehouse_url: str) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    app = create_app(queue_url="sql")

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            return await client.get("/metrics")

    res = asyncio.run(get())
    assert res.status_code == 200
    assert "integration_dead_letters_pending" in res.text and "webhook" in res.text.lower()
