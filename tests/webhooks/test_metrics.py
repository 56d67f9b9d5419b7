"""The Prometheus text exposition of the receiver's metrics."""

from __future__ import annotations

from integration_assets.webhooks.metrics import Counter, Histogram, WebhookMetrics


def test_counter_escapes_label_values() -> None:
    c = Counter("x_total", "help", ["reason"])
    c.inc('a"b\\c\nd')
    assert list(c.render())[-1] == 'x_total{reason="a\\"b\\\\c\\nd"} 1'


def test_histogram_is_cumulative_with_sum_and_count() -> None:
    h = Histogram("lat_seconds", "help", [0.1, 1.0])
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    lines = list(h.render())
    assert 'lat_seconds_bucket{le="0.1"} 1' in lines
    assert 'lat_seconds_bucket{le="1"} 2' in lines
    assert 'lat_seconds_bucket{le="+Inf"} 3' in lines
    assert "lat_seconds_sum 5.55" in lines and "lat_seconds_count 3" in lines


def test_all_providers_are_reported_from_the_start() -> None:
    text = WebhookMetrics().render()
    for provider in ("stripe", "hubspot", "easypost"):
        assert f'webhook_requests_received_total{{provider="{provider}"}} 0' in text
    assert text.endswith("\n")
