"""The receiver's metrics, exposed at ``GET /metrics`` in the Prometheus text format (version 0.0.4).

A few counters and histograms do not justify a dependency; these are thread-safe (the publisher thread
records batch sizes while the event loop counts requests).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PROVIDERS = ("stripe", "hubspot", "easypost")
# Seconds from "request verified" to "durably enqueued": a confirm or a commit takes ~1 ms on loopback, a
# batch under load a few ms; the top buckets catch broker stalls and reconnects.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labelvalues: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labelvalues] = self._values.get(labelvalues, 0.0) + amount

    def value(self, *labelvalues: str) -> float:
        with self._lock:
            return self._values.get(labelvalues, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labelvalues, value in items:
            yield f"{self.name}{_labels(self.labelnames, labelvalues)} {_num(value)}"


class Histogram:
    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts + [sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *labelvalues: str) -> None:
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            series = self._series.setdefault(labelvalues, [0.0] * (len(self.buckets) + 2))
            if index < len(self.buckets):
                series[index] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labelvalues: str) -> float:
        with self._lock:
            series = self._series.get(labelvalues)
            return series[-1] if series else 0.0

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labelvalues, series in items:
            cumulative = 0.0
            for bound, n in zip(self.buckets, series, strict=False):
                cumulative += n
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.labelnames, labelvalues, le)} {_num(cumulative)}"
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.labelnames, labelvalues, inf)} {_num(series[-1])}"
            yield f"{self.name}_sum{_labels(self.labelnames, labelvalues)} {_num(series[-2])}"
            yield f"{self.name}_count{_labels(self.labelnames, labelvalues)} {_num(series[-1])}"


class WebhookMetrics:
    """Everything ``GET /metrics`` reports. Per provider: requests received, accepted (2xx after a durable
    enqueue) and rejected by reason; events enqueued; enqueue latency. Per publish: batch size."""

    def __init__(self) -> None:
        self.received = Counter("webhook_requests_received_total", "Webhook requests received.", ["provider"])
        self.accepted = Counter(
            "webhook_requests_accepted_total", "Requests answered 2xx after a durable enqueue.", ["provider"]
        )
        self.rejected = Counter(
            "webhook_requests_rejected_total",
            "Requests refused, by reason; nothing was enqueued.",
            ["provider", "reason"],
        )
        self.events = Counter("webhook_events_enqueued_total", "Events durably enqueued.", ["provider"])
        self.enqueue_seconds = Histogram(
            "webhook_enqueue_seconds",
            "Time from a verified request to its durable enqueue.",
            LATENCY_BUCKETS,
            ["provider"],
        )
        self.batch_size = Histogram(
            "webhook_publish_batch_messages",
            "Messages per publish: the confirms (commits) of concurrent requests are batched.",
            BATCH_BUCKETS,
        )
        self.publish_failures = Counter(
            "webhook_publish_failures_total", "Publishes that failed, by error class.", ["error"]
        )
        self.invalid_elements = Counter(
            "webhook_invalid_elements_total",
            "Elements of a batch delivery that are not events: queued for the dead letters, the rest applied.",
            ["provider"],
        )
        self.key_duplicates = Counter(
            "webhook_key_duplicates_total",
            "Messages whose key and content were already queued (a redelivery): stored once.",
            ["provider"],
        )
        self.key_collisions = Counter(
            "webhook_key_collisions_total",
            "Messages whose key was already queued with other content: dead-lettered (key_collision).",
            ["provider"],
        )
        for provider in PROVIDERS:
            self.received.inc(provider, amount=0)
            self.key_collisions.inc(provider, amount=0)
            self.accepted.inc(provider, amount=0)
            self.events.inc(provider, amount=0)

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.received,
            self.accepted,
            self.rejected,
            self.events,
            self.enqueue_seconds,
            self.batch_size,
            self.publish_failures,
            self.invalid_elements,
            self.key_duplicates,
            self.key_collisions,
        ):
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


def event_key_metrics(engine: Any) -> str:
    """Gauges from the warehouse that survive restarts: key collisions dead-lettered (check
    ``key_collision``, found at publish or by the drain) per source, and events ignored by
    ``events.ignore`` (policies.yaml) per source and type. Empty when the warehouse does not answer."""
    import sqlalchemy as sa

    from integration_assets.warehouse.schema import dead_letters as dl
    from integration_assets.warehouse.schema import processed_events as pe

    try:
        with engine.connect() as conn:
            collisions = conn.execute(
                sa.select(dl.c.source_system, sa.func.count())
                .where(dl.c.stage == "event", dl.c.check_name == "key_collision")
                .group_by(dl.c.source_system)
            ).all()
            ignored = conn.execute(
                sa.select(pe.c.source, pe.c.event_type, sa.func.count())
                .where(pe.c.outcome == "ignored", pe.c.target_table.is_(None))
                .group_by(pe.c.source, pe.c.event_type)
            ).all()
    except sa.exc.SQLAlchemyError:
        return ""
    lines = [
        "# HELP integration_event_key_collisions Events dead-lettered as key collisions (same key, other content).",
        "# TYPE integration_event_key_collisions gauge",
        *(f"integration_event_key_collisions{_labels(['source'], [s])} {n}" for s, n in sorted(collisions)),
        "# HELP integration_events_ignored Events of a type policies.yaml ignores (events.ignore), in the ledger.",
        "# TYPE integration_events_ignored gauge",
        *(
            f"integration_events_ignored{_labels(['source', 'event_type'], [s, t])} {n}"
            for s, t, n in sorted(ignored)
        ),
    ]
    return "\n".join(lines) + "\n"
