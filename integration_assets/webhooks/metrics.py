"""``GET /metrics``: the receiver's registry (``observability/metrics.py``) plus gauges read from the warehouse
at scrape time, in the Prometheus text format (version 0.0.4), rendered by ``prometheus_client``.

The warehouse gauges are custom collectors: they query on each scrape (off the event loop) and survive
restarts, unlike the receiver's counters. A warehouse that does not answer is reported as
``integration_pipeline_metrics_up 0``, not as an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from integration_assets.dead_letters import queries
from integration_assets.observability.metrics import ApiBudgetCollector, BudgetTotalsRow, WebhookMetrics
from integration_assets.settings import get_settings
from integration_assets.warehouse import api_budget
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import dead_letters, loads, processed_events

__all__ = ["CONTENT_TYPE", "EventKeyCollector", "PipelineCollector", "metrics_registry", "metrics_route"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
EngineFactory = Callable[[], sa.Engine]
_OUTCOMES = ("read", "inserted", "updated", "duplicate", "quarantined")


def _age(now: datetime, ts: datetime | None) -> float | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # SQLite gives naive UTC
        ts = ts.replace(tzinfo=UTC)
    return max((now - ts).total_seconds(), 0.0)


class PipelineCollector(Collector):
    """Dead letters pending (and their oldest age), last successful load age and rows per outcome, per
    source entity, from the warehouse."""

    def __init__(
        self, engine: EngineFactory = get_engine, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._engine, self._clock = engine, clock or (lambda: datetime.now(UTC))

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "integration_pipeline_metrics_up", "1 when the warehouse answered this scrape."
        )
        try:
            with self._engine().connect() as conn:
                pending = [c for c in queries.counts(conn) if c["status"] == "pending"]
                lc = loads.c
                last_ok = conn.execute(
                    sa.select(lc.source_system, lc.entity, sa.func.max(lc.finished_at))
                    .where(lc.status == "succeeded")
                    .group_by(lc.source_system, lc.entity)
                ).all()
                totals = conn.execute(
                    sa.select(
                        lc.source_system,
                        lc.entity,
                        sa.func.sum(lc.rows_read),
                        sa.func.sum(lc.rows_inserted),
                        sa.func.sum(lc.rows_updated),
                        sa.func.sum(lc.rows_duplicate),
                        sa.func.sum(lc.rows_quarantined),
                    ).group_by(lc.source_system, lc.entity)
                ).all()
        except sa.exc.SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        now = self._clock()
        up.add_metric([], 1)
        yield up
        labels = ["source_system", "entity"]
        waiting = GaugeMetricFamily(
            "integration_dead_letters_pending", "Dead letters waiting for review or replay.", labels=labels
        )
        oldest = GaugeMetricFamily(
            "integration_dead_letters_oldest_pending_age_seconds",
            "Age of the oldest pending dead letter.",
            labels=labels,
        )
        for c in pending:
            waiting.add_metric([c["source_system"], c["entity"]], c["n"])
            if (age := _age(now, c["oldest"])) is not None:
                oldest.add_metric([c["source_system"], c["entity"]], age)
        last = GaugeMetricFamily(
            "integration_last_successful_load_age_seconds",
            "Seconds since the last successful load.",
            labels=labels,
        )
        for system, entity, ts in last_ok:
            if (age := _age(now, ts)) is not None:
                last.add_metric([system, entity], age)
        rows = CounterMetricFamily(
            "integration_rows",
            "Rows per outcome over every load in the ledger.",
            labels=[*labels, "outcome"],
        )
        for system, entity, *sums in totals:
            for outcome, value in zip(_OUTCOMES, sums, strict=True):
                rows.add_metric([system, entity, outcome], float(value or 0))
        yield from (waiting, oldest, last, rows)


class EventKeyCollector(Collector):
    """Gauges from the warehouse that survive restarts: key collisions dead-lettered (check
    ``key_collision``, found at publish or by the drain) per source, and events ignored by
    ``events.ignore`` (policies.yaml) per source and type. Nothing when the warehouse does not answer."""

    def __init__(self, engine: EngineFactory = get_engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        dl, pe = dead_letters, processed_events
        try:
            with self._engine().connect() as conn:
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
            return
        key_collisions = GaugeMetricFamily(
            "integration_event_key_collisions",
            "Events dead-lettered as key collisions (same key, other content).",
            labels=["source"],
        )
        for source, n in sorted(collisions):
            key_collisions.add_metric([source], n)
        events_ignored = GaugeMetricFamily(
            "integration_events_ignored",
            "Events of a type policies.yaml ignores (events.ignore), in the ledger.",
            labels=["source", "event_type"],
        )
        for source, event_type, n in sorted(ignored):
            events_ignored.add_metric([source, event_type], n)
        yield from (key_collisions, events_ignored)


def metrics_registry(metrics: WebhookMetrics, engine: EngineFactory = get_engine) -> CollectorRegistry:
    """The registry ``/metrics`` serves: the receiver's own, or, with PROMETHEUS_MULTIPROC_DIR set, every
    worker's merged from that directory; plus the warehouse collectors."""
    multiproc_dir = get_settings().value("PROMETHEUS_MULTIPROC_DIR")
    if multiproc_dir:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry = CollectorRegistry()
        registry.register(metrics.registry)  # a registry is a collector of its own metrics
    registry.register(PipelineCollector(engine))
    registry.register(EventKeyCollector(engine))
    registry.register(ApiBudgetCollector(lambda: _budget_totals(engine)))
    return registry


def _budget_totals(engine: EngineFactory) -> list[BudgetTotalsRow]:
    try:
        with engine().connect() as conn:
            return [
                (t.api, t.account, t.requests, t.waits, t.wait_s, t.throttled)
                for t in api_budget.totals(conn)
            ]
    except sa.exc.SQLAlchemyError:
        return []


def metrics_route(metrics: WebhookMetrics, engine: EngineFactory = get_engine) -> Route:
    """``GET /metrics`` for the receiver app; the warehouse is queried off the event loop."""
    registry = metrics_registry(metrics, engine)

    async def endpoint(_request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE)

    return Route("/metrics", endpoint, methods=["GET"])
