"""Webhook → durable enqueue throughput, side by side with two raw pika loops on the same broker (issue 3).

One run measures, one after the other on the same machine:

- **pika, confirm each**: one ``BlockingConnection`` publishing ``--size``-byte persistent, mandatory messages
  to a fresh quorum queue, waiting for the broker's confirm of each before the next (what a naive durable
  publisher does);
- **pika, windowed confirms**: one asynchronous ``SelectConnection`` keeping up to ``--window`` unconfirmed
  publishes in flight (the broker's ceiling for one publisher);
- **receiver → RabbitMQ** and **receiver → SQL queue (Postgres)**: the real receiver
  (``integration_assets.webhooks.app:create_app`` under uvicorn, a subprocess on a loopback port) taking
  signed Stripe ``payment_intent.succeeded`` events from a load generator (a subprocess: ``--connections``
  keep-alive HTTP/1.1 connections on asyncio streams, requests signed before the clock starts). A request
  counts when its 2xx arrives, which the receiver sends only after the publisher confirm (RabbitMQ) or the
  commit (SQL queue).

Each contender runs ``--seconds`` (after a 1 s warm-up), ``--repeat`` times in rotating order; the table
gives the median messages or accepted requests per second, and the receiver's rate as a multiple of the
confirm-each rate measured in the same run (the issue's target: ≥ 2.5×). Everything, load generator included, shares the machine's cores.

    .venv/bin/python bench/events_receiver.py                        # 10 s per run, 64 connections, 3 runs each
    .venv/bin/python bench/events_receiver.py --connections 32 --only each,rabbitmq

Needs RabbitMQ (INTEGRATION_BENCH_AMQP_URL, default guest@127.0.0.1:5672) and PostgreSQL
(INTEGRATION_BENCH_PG_ADMIN_URL, default postgres@127.0.0.1:5432); queues and the database are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pgdb  # noqa: E402 - bench/ is on sys.path when a script runs
from events_latency import AMQP, HOST, free_port, stop_receiver, stripe_body, wait_healthy  # noqa: E402


def log(msg: str) -> None:
    print(f"[receiver-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- raw pika


def _declare_quorum(channel: Any, name: str) -> None:
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})


def pika_confirm_each(seconds: float, size: int) -> dict[str, Any]:
    import pika

    queue = f"bench.rx.each.{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(AMQP))
    ch = conn.channel()
    _declare_quorum(ch, queue)
    ch.confirm_delivery()
    body = b"x" * size
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    try:
        end_warm = time.perf_counter() + 1.0
        while time.perf_counter() < end_warm:
            ch.basic_publish("", queue, body, props, mandatory=True)
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            ch.basic_publish("", queue, body, props, mandatory=True)  # returns once confirmed
            n += 1
        return {
            "contender": "pika, confirm each publish",
            "count": n,
            "seconds": round(elapsed, 3),
            "per_s": round(n / elapsed, 1),
        }
    finally:
        ch.queue_delete(queue)
        conn.close()


def pika_windowed(seconds: float, size: int, window: int) -> dict[str, Any]:
    """Asynchronous publisher: keeps ``window`` unconfirmed messages in flight; counts confirms."""
    import pika

    queue = f"bench.rx.window.{uuid.uuid4().hex[:8]}"
    body = b"x" * size
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    state: dict[str, Any] = {"sent": 0, "acked": 0, "t0": None, "t_end": None, "acked_at_t0": 0, "last": 0.0}

    def on_open(conn: Any) -> None:
        conn.channel(on_open_callback=on_channel)

    def on_channel(ch: Any) -> None:
        state["ch"] = ch
        ch.queue_declare(
            queue,
            durable=True,
            arguments={"x-queue-type": "quorum"},
            callback=lambda _f: ch.confirm_delivery(on_confirm, callback=lambda _f: start()),
        )

    def start() -> None:
        state["warm_until"] = time.perf_counter() + 1.0
        publish()

    def publish() -> None:
        ch = state["ch"]
        while state["sent"] - state["acked"] < window and state["t_end"] is None:
            ch.basic_publish("", queue, body, props, mandatory=True)
            state["sent"] += 1

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        state["acked"] = tag if method.multiple else state["acked"] + 1
        now = time.perf_counter()
        if state["t0"] is None and now >= state["warm_until"]:
            state["t0"], state["acked_at_t0"] = now, state["acked"]
        if state["t0"] is not None and now - state["t0"] >= seconds and state["t_end"] is None:
            state["t_end"], state["acked_at_end"] = now, state["acked"]
            state["conn"].close()
            return
        publish()

    conn = pika.SelectConnection(
        pika.URLParameters(AMQP), on_open_callback=on_open, on_close_callback=lambda *_: conn.ioloop.stop()
    )
    state["conn"] = conn
    conn.ioloop.start()
    cleanup = pika.BlockingConnection(pika.URLParameters(AMQP))
    cleanup.channel().queue_delete(queue)
    cleanup.close()
    n = state["acked_at_end"] - state["acked_at_t0"]
    elapsed = state["t_end"] - state["t0"]
    return {
        "contender": f"pika, windowed confirms ({window} in flight)",
        "count": n,
        "seconds": round(elapsed, 3),
        "per_s": round(n / elapsed, 1),
    }


# --------------------------------------------------------------------------------------------- load generator


async def _load(port: int, requests: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    """Subprocess body: ``connections`` keep-alive connections, each sending one request after the other."""
    statuses: dict[str, int] = {}
    counted = {"n": 0}
    phase = {"measuring": False, "stop": False}
    next_req = {"i": 0}

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not phase["stop"]:
            i = next_req["i"]
            next_req["i"] += 1
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if phase["measuring"]:
                statuses[status] = statuses.get(status, 0) + 1
                if status.startswith("2"):
                    counted["n"] += 1

    async def conn_task() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            await one(reader, writer)
        finally:
            writer.close()

    tasks = [asyncio.create_task(conn_task()) for _ in range(connections)]
    await asyncio.sleep(1.0)  # warm-up
    phase["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    phase["measuring"] = False
    elapsed = time.perf_counter() - t0
    phase["stop"] = True
    await asyncio.wait(tasks, timeout=15)
    return {
        "accepted": counted["n"],
        "seconds": round(elapsed, 3),
        "per_s": round(counted["n"] / elapsed, 1),
        "statuses": statuses,
    }


def loadgen_main(port: int, secret: str, prefix: str, n: int, connections: int, seconds: float) -> None:
    from integration_assets.providers.stripe import sign as sign_stripe

    now = int(time.time())
    requests = []
    for i in range(n):  # unique events, signed up front: the clock measures the receiver, not the signing
        body = stripe_body(f"evt_{prefix}_{i:08d}", f"pi_{prefix}_{i:08d}", now)
        head = (
            f"POST /webhooks/stripe HTTP/1.1\r\nhost: {HOST}:{port}\r\ncontent-type: application/json\r\n"
            f"stripe-signature: {sign_stripe(body, secret, now)}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    print(json.dumps(asyncio.run(_load(port, requests, connections, seconds))), flush=True)


def receiver_run(backend: str, pg_url: str, args: argparse.Namespace) -> dict[str, Any]:
    secret = "whsec_bench_" + secrets.token_hex(16)
    prefix = f"rx{uuid.uuid4().hex[:8]}"
    amqp_url = AMQP + ("&" if "?" in AMQP else "?") + urlencode({"prefix": f"benchrx{prefix}"})
    queue_url = "sql" if backend == "sql" else amqp_url
    env = {
        **os.environ,
        "INTEGRATION_WAREHOUSE_URL": pg_url,
        "INTEGRATION_QUEUE_URL": queue_url,
        "STRIPE_WEBHOOK_SECRET": secret,
        "INTEGRATION_DATA_DIR": str(ROOT / "bench" / ".work" / f"data-{prefix}"),
    }
    port = free_port()
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
    try:
        wait_healthy(f"http://{HOST}:{port}", receiver)
        # Enough distinct events for the whole run at ~10k/s: a replayed id would be a duplicate, not new work.
        n = int((args.seconds + 2) * 10_000)
        gen = subprocess.run(
            [
                sys.executable,
                __file__,
                "--_loadgen",
                str(port),
                secret,
                prefix,
                str(n),
                str(args.connections),
                str(args.seconds),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.seconds + 300,
        )
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed: {gen.stderr[-2000:]}")
        out = json.loads(gen.stdout.strip().splitlines()[-1])
    finally:
        stop_receiver(receiver, None if backend == "sql" else amqp_url, pg_url)
    label = (
        "receiver → RabbitMQ (quorum), 2xx after confirm"
        if backend != "sql"
        else "receiver → SQL queue (Postgres), 2xx after commit"
    )
    return {
        "contender": label,
        "count": out["accepted"],
        "seconds": out["seconds"],
        "per_s": out["per_s"],
        "statuses": out["statuses"],
        "connections": args.connections,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    each = next((r["per_s"] for r in results if r["contender"].startswith("pika, confirm each")), None)
    lines = ["| contender | per second (median) | runs | × confirm-each (medians) |", "|---|---:|---|---:|"]
    for r in results:
        ratio = f"{r['per_s'] / each:.2f}×" if each else "n/a"
        runs = ", ".join(f"{x:,.0f}" for x in r["runs"])
        lines.append(f"| {r['contender']} | {r['per_s']:,.0f} | {runs} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per contender, order rotated; medians reported"
    )
    parser.add_argument("--size", type=int, default=500, help="raw pika message size (bytes)")
    parser.add_argument("--window", type=int, default=1000, help="raw pika unconfirmed messages in flight")
    parser.add_argument("--only", default="each,window,rabbitmq,sql")
    parser.add_argument("--_loadgen", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._loadgen:
        port, secret, prefix, n, conns, secs = args._loadgen
        loadgen_main(int(port), secret, prefix, int(n), int(conns), float(secs))
        return
    if not (0 < args.seconds <= 600 and 0 < args.connections <= 512):
        parser.error("--seconds must be in (0, 600] and --connections in (0, 512]")
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    workdir = ROOT / "bench" / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    name, url = pgdb.fresh_database("ia_bench_rx")
    try:
        order = [c for c in ("each", "window", "rabbitmq", "sql") if c in only]
        for rep in range(args.repeat):
            for contender in (
                order[rep % len(order) :] + order[: rep % len(order)]
            ):  # rotate between repetitions
                if contender == "each":
                    r = pika_confirm_each(args.seconds, args.size)
                elif contender == "window":
                    r = pika_windowed(args.seconds, args.size, args.window)
                else:
                    r = receiver_run(contender, url, args)
                r["rep"] = rep + 1
                runs.append(r)
                log(f"rep {rep + 1} {r['contender']}: {r['per_s']:,.0f}/s {r.get('statuses', '')}")
    finally:
        pgdb.drop_database(name)
    results = []
    for label in dict.fromkeys(r["contender"] for r in runs):
        mine = [r for r in runs if r["contender"] == label]
        rates = sorted(r["per_s"] for r in mine)
        results.append(
            {
                "contender": label,
                "per_s": statistics.median(rates),
                "runs": rates,
                "count": sum(r["count"] for r in mine),
                "seconds": sum(r["seconds"] for r in mine),
            }
        )
    print(
        f"\nWebhook → durable enqueue, {args.seconds:g} s per run, median of {args.repeat}, receiver load from "
        f"{args.connections} connections ({platform.machine()}, {os.cpu_count()} CPUs, 1-min load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after)\n"
    )
    print(markdown(results))
    out = workdir / f"receiver-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "events_receiver",
                "at": datetime.now(UTC).isoformat(),
                "load_average": [load_before, os.getloadavg()],
                "params": vars(args) | {"_loadgen": None},
                "results": results,
                "runs": runs,
            },
            indent=2,
            default=str,
        )
    )
    log(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
