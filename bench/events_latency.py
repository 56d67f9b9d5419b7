"""End-to-end event latency: webhook accepted (2xx) → effect committed in the warehouse (issue 3).

For each backend (the SQL queue in Postgres, and RabbitMQ's quorum queue), on a fresh PostgreSQL database:

- the real receiver (``integration_assets.webhooks.app:create_app``) runs under uvicorn in a subprocess on a
  free loopback port, with a throw-away Stripe secret in ``STRIPE_WEBHOOK_SECRET``;
- a drainer subprocess calls the real ``integration_assets.events.drain.drain`` in a loop, exactly as
  ``integration-assets events drain`` does (default batch and max, queue opened and closed per drain from
  ``INTEGRATION_QUEUE_URL``), sleeping ``--pause`` seconds (default 0.5 s) between drains. This stands in for
  the sensor-launched Dagster runs: it does not include the sensor interval nor the run launch overhead;
- the load generator (httpx, loopback only) posts ``--rate`` signed Stripe ``payment_intent.succeeded``
  events per second (default 200/s) for ``--seconds`` (default 60 s), each with a unique event id and
  PaymentIntent, and records the wall-clock time of each 2xx answer (= durably queued).

After the load, ``processed_events.applied_at`` of each event (set by the processing transaction right before
its commit) is polled until every accepted event is applied or ``--settle-timeout`` passes. Latency =
applied_at − accept time, same host clock. Reports events sent/accepted/applied, p50/p95/p99/max latency and
the achieved send rate, prints a Markdown table and writes JSON to ``bench/.work/latency-<timestamp>.json``.

    .venv/bin/python bench/events_latency.py                       # both backends, 60 s each at 200/s
    .venv/bin/python bench/events_latency.py --seconds 30 --backends sql

Needs PostgreSQL (INTEGRATION_BENCH_PG_ADMIN_URL, default postgres@127.0.0.1:5432) and, for the rabbitmq
backend, RabbitMQ (INTEGRATION_BENCH_AMQP_URL, default guest@127.0.0.1:5672). The database
(``ia_bench_lat_<random>``) is dropped and the RabbitMQ queues (unique prefix) are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
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

from integration_assets.warehouse import db  # noqa: E402

AMQP = os.environ.get("INTEGRATION_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
HOST = "127.0.0.1"
MAX_IN_FLIGHT = 16  # load generator threads = requests in flight at most


def log(msg: str) -> None:
    print(f"[latency-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- database


def fresh_database() -> tuple[str, str]:
    return pgdb.fresh_database("ia_bench_lat")


# --------------------------------------------------------------------------------------------- drainer


def drainer_main(stop_file: str, pause_s: float, max_s: float) -> None:
    """Subprocess: drain, pause, repeat until ``stop_file`` exists or ``max_s`` passed (bounded)."""
    from integration_assets.events.drain import DEFAULT_BATCH, DEFAULT_MAX_EVENTS, drain
    from integration_assets.settings import get_settings

    engine = db.get_engine(get_settings().warehouse_url)
    deadline = time.monotonic() + max_s
    drains = events = batches = 0
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        report = drain(engine=engine, max_events=DEFAULT_MAX_EVENTS, batch_size=DEFAULT_BATCH)
        drains += 1
        events += report.totals.events_in
        batches += report.batches
        if report.outage:
            print(f"drain outage: {report.outage}", file=sys.stderr, flush=True)
        time.sleep(pause_s)
    print(json.dumps({"drains": drains, "batches": batches, "events_in": events}), flush=True)


# --------------------------------------------------------------------------------------------- load


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stripe_body(evt: str, pi: str, created: int) -> bytes:
    from integration_assets.sandbox.events import payment_intent, stripe_event

    obj = payment_intent(
        pi, 1000 + created % 9000, "eur", "succeeded", created, customer=None, charge=None, metadata={}
    )
    return json.dumps(stripe_event(evt, "payment_intent.succeeded", obj, created)).encode()


def generate_load(
    base_url: str, secret: str, prefix: str, rate: float, seconds: float, workers: int = MAX_IN_FLIGHT
) -> tuple[dict[str, float], dict[str, int], float, list[float]]:
    """POST ``rate * seconds`` signed events, event i scheduled at t0 + i/rate. Returns (event id → accept
    wall time, status counts, achieved send rate, sorted request durations in ms). ``workers`` threads, each
    with its own keep-alive ``httpx.Client``, bound the requests in flight; a worker never sends an event
    before its scheduled time, so the rate is the target unless the receiver answers too slowly. Each
    request has a 10 s timeout; the loop ends by itself.

    (httpx's AsyncClient was tried first: its connection pool and anyio cost ~6 ms of client CPU per request,
    which on a small machine starved the receiver and the drains. The sync client costs a fraction of that.)"""
    import itertools
    import threading

    import httpx

    from integration_assets.providers.stripe import sign as sign_stripe

    n = int(rate * seconds)
    accepted: dict[str, float] = {}
    request_ms: list[float] = []
    statuses: dict[str, int] = {}
    counter = itertools.count()
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.2
    last_sent = [t0]

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            while (i := next(counter)) < n:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                evt = f"evt_{prefix}_{i:07d}"
                now = time.time()
                t_send = time.perf_counter()
                body = stripe_body(evt, f"pi_{prefix}_{i:07d}", int(now))
                headers = {
                    "content-type": "application/json",
                    "stripe-signature": sign_stripe(body, secret, int(now)),
                }
                try:
                    r = client.post("/webhooks/stripe", content=body, headers=headers)
                    key = str(r.status_code)
                    ok = 200 <= r.status_code < 300
                except httpx.HTTPError as exc:
                    key, ok = type(exc).__name__, False
                done = time.time()
                with lock:
                    statuses[key] = statuses.get(key, 0) + 1
                    last_sent[0] = max(last_sent[0], t_send)
                    if ok:
                        accepted[evt] = done
                        request_ms.append((time.perf_counter() - t_send) * 1000)

    threads = [threading.Thread(target=worker, name=f"load-{k}", daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    send_s = last_sent[0] - t0
    achieved = (n - 1) / send_s if send_s > 0 and n > 1 else 0.0
    return accepted, statuses, achieved, sorted(request_ms)


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            if httpx.get(base_url + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("receiver did not become healthy")


def stop_receiver(receiver: subprocess.Popen[bytes], amqp_url: str | None, warehouse_url: str) -> None:
    """Stop the receiver subprocess and delete the RabbitMQ topology it declared (``amqp_url`` None: SQL)."""
    receiver.terminate()
    try:
        receiver.wait(timeout=30)
    except subprocess.TimeoutExpired:
        receiver.kill()
        receiver.wait()
    if amqp_url is not None:
        from integration_assets.queue.rabbitmq import RabbitMQQueue

        q = RabbitMQQueue(amqp_url, warehouse_url=warehouse_url)
        try:
            q.delete_topology()
        finally:
            q.close()


# --------------------------------------------------------------------------------------------- measure


def applied_times(url: str, prefix: str) -> dict[str, float]:
    """Event id (without the ``stripe:`` prefix) → applied_at (epoch seconds) for this run's events."""
    with db.get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT event_id, applied_at FROM processed_events WHERE source = 'stripe' "
                "AND event_id LIKE :p AND outcome = 'applied'"
            ),
            {"p": f"%evt_{prefix}_%"},
        ).all()
    return {eid.split(":", 1)[-1]: at.timestamp() for eid, at in rows}


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))  # nearest rank
    return sorted_values[k]


def run_backend(backend: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    secret = "whsec_bench_" + secrets.token_hex(16)
    prefix = f"{backend[:3]}{uuid.uuid4().hex[:8]}"
    amqp_url = None
    if backend == "sql":
        queue_url = "sql"
    else:
        amqp_url = AMQP + ("&" if "?" in AMQP else "?") + urlencode({"prefix": f"benchlat{prefix}"})
        queue_url = amqp_url
    env = {
        **os.environ,
        "INTEGRATION_WAREHOUSE_URL": url,
        "INTEGRATION_QUEUE_URL": queue_url,
        "STRIPE_WEBHOOK_SECRET": secret,
        "INTEGRATION_DATA_DIR": str(workdir / f"data-{prefix}"),
    }
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    stop_file = workdir / f"stop-{prefix}"
    budget_s = args.seconds + args.settle_timeout + 120  # hard bound for the drainer loop
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "integration_assets.webhooks.app:create_app",
            "--factory",
            "--host",
            HOST,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    drainer = None
    try:
        wait_healthy(base_url, receiver)
        drainer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--_drainer",
                str(stop_file),
                "--pause",
                str(args.pause),
                "--seconds",
                str(budget_s),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        log(
            f"{backend}: receiver on {base_url}, drainer pid {drainer.pid}; sending {args.rate}/s for {args.seconds}s"
        )
        accepted, statuses, achieved, request_ms = generate_load(
            base_url, secret, prefix, args.rate, args.seconds
        )
        log(
            f"{backend}: sent {sum(statuses.values())}, accepted {len(accepted)} ({statuses}); waiting for the drains"
        )
        deadline = time.monotonic() + args.settle_timeout
        applied = applied_times(url, prefix)
        while len(set(accepted) & set(applied)) < len(accepted) and time.monotonic() < deadline:
            time.sleep(0.5)
            applied = applied_times(url, prefix)
    finally:
        stop_file.touch()
        drain_stats: dict[str, Any] = {}
        if drainer is not None:
            try:
                out, _ = drainer.communicate(timeout=120)
                drain_stats = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
            except subprocess.TimeoutExpired:
                drainer.kill()
                drainer.wait()
        stop_receiver(receiver, amqp_url, url)

    lat = sorted((applied[e] - t) * 1000 for e, t in accepted.items() if e in applied)
    sent = sum(statuses.values())

    def ms(p: float) -> float | None:
        v = percentile(lat, p)
        return None if v is None else round(v, 1)

    return {
        "backend": "rabbitmq (quorum)" if backend != "sql" else "sql (postgres)",
        "sent": sent,
        "accepted": len(accepted),
        "applied": len(lat),
        "statuses": statuses,
        "target_rate": args.rate,
        "achieved_send_rate": round(achieved, 1),
        "seconds": args.seconds,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "max_ms": round(lat[-1], 1) if lat else None,
        "min_ms": round(lat[0], 1) if lat else None,
        "request_p50_ms": _round(percentile(request_ms, 50)),
        "request_p99_ms": _round(percentile(request_ms, 99)),
        "drains": drain_stats.get("drains"),
        "batches": drain_stats.get("batches"),
        "events_per_batch": round(drain_stats["events_in"] / drain_stats["batches"], 1)
        if drain_stats.get("batches")
        else None,
        "pause_s": args.pause,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def markdown(results: list[dict[str, Any]]) -> str:
    head = (
        "| backend | sent | accepted | applied | send rate /s | p50 ms | p95 ms | p99 ms | max ms | drains |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r['backend']} | {r['sent']} | {r['accepted']} | {r['applied']} | {r['achieved_send_rate']} | "
        f"{r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['drains']} |"
        for r in results
    ]
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration per backend")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--pause", type=float, default=0.5, help="pause between drains (s)")
    parser.add_argument(
        "--settle-timeout", type=float, default=120.0, help="max wait for the last effects (s)"
    )
    parser.add_argument("--backends", default="sql,rabbitmq")
    parser.add_argument("--_drainer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._drainer:
        drainer_main(args._drainer, args.pause, args.seconds)
        return
    if not (0 < args.seconds <= 3600 and 0 < args.rate <= 5000):
        parser.error("--seconds must be in (0, 3600] and --rate in (0, 5000]")

    workdir = ROOT / "bench" / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    name, url = fresh_database()
    log(f"database {name}")
    results = []
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
                if backend not in ("sql", "rabbitmq"):
                    parser.error(f"unknown backend {backend!r}")
                results.append(run_backend(backend, url, args, Path(tmp)))
    finally:
        drop_database(name)
        log(f"dropped {name}")

    table = markdown(results)
    print(table)
    out = workdir / f"latency-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "events_latency",
                "at": datetime.now(UTC).isoformat(),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                },
                "params": {"seconds": args.seconds, "rate": args.rate, "pause_s": args.pause},
                "results": results,
            },
            indent=2,
        )
    )
    log(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
