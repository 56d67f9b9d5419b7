"""Drain throughput: events applied per second by one drain (``integration_assets.events.drain``).

On a fresh PostgreSQL database: signed sample events (Stripe PaymentIntent/charge/refund lifecycles and
EasyPost trackers, ~15% duplicate deliveries, shuffled) are turned into queue messages by the receiver's own
message builders and published, then one drain applies them all; the wall time of the drain alone is
measured. Each backend (the SQL queue in the same Postgres, and RabbitMQ's quorum queue) runs ``--runs``
times on emptied tables; the median is reported.

    .venv/bin/python bench/events_drain.py                          # 40,000 deliveries, 3 runs, both backends
    .venv/bin/python bench/events_drain.py --events 10000 --batch 2500 --backends sql

Needs PostgreSQL (INTEGRATION_BENCH_PG_ADMIN_URL, default postgres@127.0.0.1:5432) and, for the rabbitmq
backend, RabbitMQ (INTEGRATION_BENCH_AMQP_URL, default guest@127.0.0.1:5672).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pgdb  # noqa: E402 - bench/ is on sys.path when a script runs
from pgdb import drop_database  # noqa: E402

from integration_assets.events.drain import drain, drain_queue_url  # noqa: E402
from integration_assets.providers import PROVIDERS  # noqa: E402
from integration_assets.queue import Message, Queue  # noqa: E402
from integration_assets.queue.rabbitmq import RabbitMQQueue  # noqa: E402
from integration_assets.queue.sql import SqlQueue  # noqa: E402
from integration_assets.sandbox.events import generate_event_samples  # noqa: E402
from integration_assets.warehouse import db  # noqa: E402
from integration_assets.webhooks.receive import provider_messages  # noqa: E402

AMQP = os.environ.get("INTEGRATION_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
TABLES = ("payments", "shipment_events", "processed_events", "dead_letters", "event_queue")


def log(msg: str) -> None:
    print(f"[events-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def messages(n_events: int, seed: int) -> list[Message]:
    """About ``n_events`` deliveries as the receiver would enqueue them (same builders, same bytes)."""
    sample = generate_event_samples(
        seed, payments=max(1, n_events // 5), trackers=max(1, n_events // 50), poison=False
    )
    out: list[Message] = []
    now = datetime.now(UTC)
    for ev in sample.deliveries[:n_events]:
        body = ev.body()
        doc = json.loads(body)
        headers = {"content-type": "application/json"}
        out.extend(provider_messages(PROVIDERS[ev.provider], doc, body, headers, now))
    return out


def fresh_database() -> tuple[str, str]:
    return pgdb.fresh_database("ia_bench_events")


def empty(url: str) -> None:
    with db.get_engine(url).begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)}"))
    with db.get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))


def make_queue(backend: str, url: str, batch: int) -> tuple[Queue, Any]:
    if backend == "sql":
        return SqlQueue(url, name="bench"), None
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    amqp = AMQP + ("&" if "?" in AMQP else "?") + urlencode({"prefix": prefix})
    q = RabbitMQQueue(drain_queue_url(amqp, batch_size=batch), warehouse_url=url)
    return q, q


def one_run(backend: str, url: str, msgs: list[Message], batch: int) -> dict[str, Any]:
    empty(url)
    queue, rabbit = make_queue(backend, url, batch)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(msgs), 1000):
            queue.publish_many(msgs[start : start + 1000])
        publish_s = time.perf_counter() - t0
        # Exactly what was queued, so the drain ends on its last event instead of waiting to see an empty
        # queue: the SQL queue collapses copies of a pending message; RabbitMQ keeps every copy (and a quorum
        # queue's message count can lag its confirms).
        queued = queue.depth() if rabbit is None else len(msgs)
        # wait_s: a fresh quorum queue can take a moment to hand out its first delivery after the confirms;
        # without it a drain may see an empty queue and apply nothing (seen once in ~30 runs).
        report = drain(queue, engine=db.get_engine(url), max_events=queued, batch_size=batch, wait_s=5.0)
        assert report.balanced and report.totals.dead_lettered == 0 and not report.outage, report.as_dict()
        return {
            "backend": backend,
            "deliveries": len(msgs),
            "events_in": report.totals.events_in,
            "applied": report.totals.applied,
            "stale": report.totals.stale,
            "duplicates": report.totals.duplicates,
            "batches": report.batches,
            "drain_s": round(report.seconds, 3),
            "events_per_s": round(report.events_per_s, 1),
            "publish_s": round(publish_s, 3),
        }
    finally:
        if rabbit is not None:
            rabbit.delete_topology()
        queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=40_000, help="deliveries per run (10k-50k)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10_000, help="events per batch (transaction)")
    parser.add_argument("--backends", default="sql,rabbitmq")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    msgs = messages(args.events, args.seed)
    log(f"{len(msgs)} deliveries ({len({m.id for m in msgs})} distinct events)")
    name, url = fresh_database()
    results: list[dict[str, Any]] = []
    try:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            for run in range(args.runs):
                r = one_run(backend, url, msgs, args.batch)
                log(
                    f"{backend} run {run + 1}: {r['events_per_s']:.0f} events/s ({r['drain_s']} s, "
                    f"{r['batches']} batches)"
                )
                results.append(r)
    finally:
        drop_database(name)
    print(
        f"\nDrain throughput, {len(msgs)} deliveries, batch {args.batch}, median of {args.runs} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)\n"
    )
    print("| queue | events/s (median) | runs | drain s (median) |")
    print("|---|---|---|---|")
    for backend in dict.fromkeys(r["backend"] for r in results):
        rs = [r for r in results if r["backend"] == backend]
        label = "SQL queue (Postgres)" if backend == "sql" else "RabbitMQ (quorum queue) → Postgres"
        each = ", ".join(f"{r['events_per_s']:,.0f}" for r in rs)
        print(
            f"| {label} | {statistics.median(r['events_per_s'] for r in rs):,.0f} | {each} | "
            f"{statistics.median(r['drain_s'] for r in rs)} |"
        )
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
