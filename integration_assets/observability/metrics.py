"""The receiver's metrics, declared on one ``prometheus_client`` registry; ``webhooks/metrics.py`` serves it
on ``GET /metrics`` next to the gauges read from the warehouse, and the shared API budget's counters per API
(:class:`ApiBudgetCollector`: requests, waits, seconds waited, 429s, over every run and process).

Per provider: requests received, accepted (2xx after a durable enqueue) and rejected by reason; events
enqueued; enqueue latency. Per publish: batch size. The metrics are thread-safe (the publisher threads
record batch sizes while the event loop counts requests). When ``PROMETHEUS_MULTIPROC_DIR`` is set (the
receiver runs under several uvicorn workers) prometheus_client keeps the values in files there, and the
scrape merges every worker's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BATCH_BUCKETS", "LATENCY_BUCKETS", "ApiBudgetCollector", "BudgetTotalsRow", "WebhookMetrics"]

# No `<name>_created` series: the exposition stays the series it has always had.
disable_created_metrics()

# Seconds from "request verified" to "durably enqueued": a confirm or a commit takes ~1 ms on loopback, a
# batch under load a few ms; the top buckets catch broker stalls and reconnects.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class WebhookMetrics:
    """The receiver's counters and histograms, on ``self.registry`` (one per receiver app, so the apps a
    test builds count on their own). ``providers`` get their zeroed series from the start."""

    def __init__(self, providers: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "webhook_requests_received", "Webhook requests received.", ["provider"], registry=r
        )
        self.accepted = Counter(
            "webhook_requests_accepted",
            "Requests answered 2xx after a durable enqueue.",
            ["provider"],
            registry=r,
        )
        self.rejected = Counter(
            "webhook_requests_rejected",
            "Requests refused, by reason; nothing was enqueued.",
            ["provider", "reason"],
            registry=r,
        )
        self.events = Counter("webhook_events_enqueued", "Events durably enqueued.", ["provider"], registry=r)
        self.enqueue_seconds = Histogram(
            "webhook_enqueue_seconds",
            "Time from a verified request to its durable enqueue.",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "webhook_publish_batch_messages",
            "Messages per publish: the confirms (commits) of concurrent requests are batched.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.publish_failures = Counter(
            "webhook_publish_failures", "Publishes that failed, by error class.", ["error"], registry=r
        )
        self.invalid_elements = Counter(
            "webhook_invalid_elements",
            "Elements of a batch delivery that are not events: queued for the dead letters, the rest applied.",
            ["provider"],
            registry=r,
        )
        self.key_duplicates = Counter(
            "webhook_key_duplicates",
            "Messages whose key and content were already queued (a redelivery): stored once.",
            ["provider"],
            registry=r,
        )
        self.key_collisions = Counter(
            "webhook_key_collisions",
            "Messages whose key was already queued with other content: dead-lettered (key_collision).",
            ["provider"],
            registry=r,
        )
        for provider in providers:
            for counter in (self.received, self.key_collisions, self.accepted, self.events):
                counter.labels(provider)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when the series does not exist yet), e.g.
        ``value("webhook_requests_received_total", provider="stripe")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def batch_size_count(self) -> float:
        """How many publishes were observed."""
        return self.value("webhook_publish_batch_messages_count")


# (api, account, requests, waits, wait seconds, 429s): the shared API budget's running totals, read from the
# warehouse at scrape time (``warehouse.api_budget.totals``), so every run and process is counted.
BudgetTotalsRow = tuple[str, str, int, int, float, int]


class ApiBudgetCollector(Collector):
    """Counters per external API and account from the shared API budget (issue 13): requests sent, requests
    that waited for the budget, seconds waited, 429 answers. ``read`` returns the rows (none when the
    warehouse does not answer: ``integration_pipeline_metrics_up`` says so)."""

    def __init__(self, read: Callable[[], Iterable[BudgetTotalsRow]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        rows = list(self._read())
        if not rows:
            return
        labels = ["api", "account"]
        requests = CounterMetricFamily(
            "integration_api_requests", "Requests granted by the shared API budget.", labels=labels
        )
        waits = CounterMetricFamily(
            "integration_api_budget_waits", "Requests that waited for the shared API budget.", labels=labels
        )
        wait_s = CounterMetricFamily(
            "integration_api_budget_wait_seconds",
            "Seconds requests waited for the shared API budget.",
            labels=labels,
        )
        throttled = CounterMetricFamily(
            "integration_api_throttled", "Answers 429 (rate limited) from the API.", labels=labels
        )
        for api, account, n, w, s, t in rows:
            requests.add_metric([api, account], n)
            waits.add_metric([api, account], w)
            wait_s.add_metric([api, account], s)
            throttled.add_metric([api, account], t)
        yield from (requests, waits, wait_s, throttled)
