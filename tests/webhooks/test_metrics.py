"""``GET /metrics``: the receiver's prometheus_client registry, in the text format Prometheus parses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.warehouse.db import get_engine
from integration_assets.webhooks.metrics import metrics_registry

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_all_providers_are_reported_from_the_start() -> None:
    metrics = WebhookMetrics(["stripe", "hubspot", "easypost", "toy"])
    text = generate_latest(metrics.registry).decode()
    got = samples(text)
    for provider in ("stripe", "hubspot", "easypost", "toy"):
        assert got[("webhook_requests_received_total", (("provider", provider),))] == 0
        assert f'webhook_requests_received_total{{provider="{provider}"}} 0.0' in text
    assert "_created" not in text


def test_counters_and_histograms_keep_their_names_and_labels() -> None:
    metrics = WebhookMetrics(["stripe"])
    metrics.received.labels("stripe").inc()
    metrics.rejected.labels("stripe", 'a"b\\c\nd').inc()
    for seconds in (0.0005, 0.2, 50.0):
        metrics.enqueue_seconds.labels("stripe").observe(seconds)
    metrics.batch_size.observe(3)
    text = generate_latest(metrics.registry).decode()
    got = samples(text)
    assert got[("webhook_requests_rejected_total", (("provider", "stripe"), ("reason", 'a"b\\c\nd')))] == 1
    assert 'reason="a\\"b\\\\c\\nd"' in text  # label values escaped by the library
    bucket = "webhook_enqueue_seconds_bucket"
    assert got[(bucket, (("le", "0.001"), ("provider", "stripe")))] == 1
    assert got[(bucket, (("le", "0.25"), ("provider", "stripe")))] == 2
    assert got[(bucket, (("le", "+Inf"), ("provider", "stripe")))] == 3
    assert got[("webhook_enqueue_seconds_count", (("provider", "stripe"),))] == 3
    assert "# TYPE webhook_enqueue_seconds histogram" in text
    assert "# TYPE webhook_requests_received_total counter" in text
    assert metrics.value("webhook_requests_received_total", provider="stripe") == 1
    assert metrics.value("webhook_requests_received_total", provider="nobody") == 0
    assert metrics.batch_size_count() == 1


def test_an_unreachable_warehouse_is_reported_down_not_raised() -> None:
    metrics = WebhookMetrics(["stripe"])
    text = generate_latest(metrics_registry(metrics, lambda: get_engine(UNREACHABLE))).decode()
    got = samples(text)
    assert got[("integration_pipeline_metrics_up", ())] == 0
    assert got[("webhook_requests_received_total", (("provider", "stripe"),))] == 0


@pytest.mark.anyio
async def test_the_endpoint_parses_with_the_prometheus_parser(client: httpx.AsyncClient) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["webhook_requests_received"].type == "counter"
    assert families["webhook_enqueue_seconds"].type == "histogram"
    assert families["integration_pipeline_metrics_up"].type == "gauge"


WORKER = """
from integration_assets.observability.metrics import WebhookMetrics
m = WebhookMetrics(["stripe"])
m.received.labels("stripe").inc({n})
m.enqueue_seconds.labels("stripe").observe(0.01)
"""


def test_several_workers_are_merged_from_the_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    # Each worker is its own process with PROMETHEUS_MULTIPROC_DIR set (prometheus_client picks its file
    # backed values at import); the scrape reads every worker's file.
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared), "PATH": "/usr/bin:/bin"}
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", WORKER.format(n=n)], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    text = generate_latest(metrics_registry(WebhookMetrics(), lambda: get_engine(UNREACHABLE))).decode()
    got = samples(text)
    assert got[("webhook_requests_received_total", (("provider", "stripe"),))] == 5
    assert got[("webhook_enqueue_seconds_count", (("provider", "stripe"),))] == 2
    assert got[("integration_pipeline_metrics_up", ())] == 0
