"""Pipeline gauges on the receiver's /metrics, from a real warehouse."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from integration_assets.ingest import ingest_file
from integration_assets.observability.metrics import pipeline_metrics
from integration_assets.warehouse.db import get_engine

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def test_gauges_per_source_entity(warehouse_url: str) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    text = pipeline_metrics(get_engine(warehouse_url))
    assert "integration_pipeline_metrics_up 1" in text
    assert 'integration_dead_letters_pending{source_system="hubspot",entity="contacts"} 2' in text
    assert 'integration_rows_total{source_system="hubspot",entity="contacts",outcome="read"} 6' in text
    assert 'integration_rows_total{source_system="hubspot",entity="contacts",outcome="quarantined"} 2' in text
    assert "integration_last_successful_load_age_seconds{" in text
    assert "# TYPE integration_rows_total counter" in text


def test_unreachable_warehouse_reports_down() -> None:
    text = pipeline_metrics(get_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1"))
    assert text.strip().endswith("integration_pipeline_metrics_up 0")


def test_receiver_metrics_endpoint_includes_pipeline_gauges(warehouse_url: str) -> None:
    from integration_assets.webhooks.app import create_app

    ingest_file(FIXTURE, "hubspot", "contacts")
    app = create_app(queue_url="sql")

    async def scrape() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            return await client.get("/metrics")

    res = asyncio.run(scrape())
    assert res.status_code == 200
    assert "integration_dead_letters_pending" in res.text and "webhook" in res.text.lower()


def test_load_logs_carry_correlation_ids(warehouse_url: str) -> None:
    import io
    import json
    import logging

    from integration_assets.observability.logging import configure_logging

    buf = io.StringIO()
    handler = configure_logging("INFO", json=True, stream=buf)
    try:
        report = ingest_file(FIXTURE, "hubspot", "contacts")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    mine = [x for x in lines if x.get("logger") == "integration_assets.ingest"]
    assert mine and mine[-1]["load_id"] == report.load_id
    assert (mine[-1]["source_system"], mine[-1]["entity"]) == ("hubspot", "contacts")
    assert "ann.lee@example.com" not in buf.getvalue()
