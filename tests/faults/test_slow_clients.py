"""Slow clients: the receiver as ``integration-assets webhooks serve`` runs it (its own process, the stock
uvicorn limits), SQL queue in a Postgres warehouse. While slow connections hold the server — 150 that
dribble their body a byte at a time; 75 that dribble their header block and 75 that connect and send
nothing — signed Stripe events are posted as a provider would (a 503 is sent again later). Every event is
accepted and applied once; every slow connection is closed by the server (a bounded wait: "closed at
all", not how fast)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from integration_assets.events.drain import drain
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse.db import get_engine
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import stripe_body
from tests.support.servers import free_port
from tests.webhooks.conftest import STRIPE_SECRET, stripe_headers

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

GOOD = 60
WAIT_CLOSED_S = 30  # bound of the wait for the server to close them (header block 10 s, body 2 s here)


@pytest.fixture
def warehouse(pg_database: str) -> str:
    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    return pg_database


@pytest.fixture
def served(warehouse: str) -> Iterator[tuple[str, str]]:
    port = free_port()
    name = f"slow{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "INTEGRATION_WAREHOUSE_URL": warehouse,
        "INTEGRATION_QUEUE_URL": f"sql?name={name}",
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "INTEGRATION_WEBHOOK_BODY_TIMEOUT_SECONDS": "2",
    }
    code = "from integration_assets.cli import entry; entry()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "webhooks", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the receiver did not come up"
            time.sleep(0.1)
        yield base, name
    finally:
        proc.send_signal(signal.SIGTERM)  # our own server process
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _open_slow(port: int, kinds: dict[str, int]) -> list[tuple[str, socket.socket]]:
    body = b'{"id": "evt_slow"}'
    head = (
        "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: {stripe_headers(body)['stripe-signature']}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    conns: list[tuple[str, socket.socket]] = []
    for kind, n in kinds.items():
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if kind == "body":
                sock.sendall(head + b"{")
            elif kind == "head":
                sock.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n")
            sock.setblocking(False)
            conns.append((kind, sock))
    return conns


def _wait_closed(conns: list[tuple[str, socket.socket]], timeout_s: float) -> dict[str, int]:
    """Keep dribbling (a byte per slow connection per round) until the server has closed each; returns how
    many of each kind are still open at the end."""
    open_ = {sock: kind for kind, sock in conns}
    deadline = time.monotonic() + timeout_s
    while open_ and time.monotonic() < deadline:
        for sock, kind in list(open_.items()):
            if kind != "silent":
                with contextlib.suppress(OSError):
                    sock.send(b" " if kind == "body" else b"X")
        readable, _, _ = select.select(list(open_), [], [], 0.25)
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                open_.pop(sock, None)
    left = {kind: 0 for kind, _ in conns}
    for kind in open_.values():
        left[kind] += 1
    for _, sock in conns:
        sock.close()
    return left


def _post_all(base: str, ledger: EventLedger) -> None:
    def one(n: int) -> None:
        key, body = stripe_body(n, prefix="evt_slowcl")
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(40):
                try:
                    status = client.post(
                        "/webhooks/stripe", content=body, headers=stripe_headers(body)
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                ledger.send(key, key, confirmed=status == 200)
                if status == 200:
                    return
                time.sleep(0.5)  # the client's back-off before it retries (the scenario)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(GOOD)))


def _scenario(
    served: tuple[str, str], warehouse: str, record: Callable[..., Figures], kinds: dict[str, int]
) -> None:
    base, name = served
    port = int(base.rsplit(":", 1)[1])
    conns = _open_slow(port, kinds)
    ledger = EventLedger()
    _post_all(base, ledger)
    left = _wait_closed(conns, WAIT_CLOSED_S)
    assert all(e.confirmed for e in ledger.events.values())
    queue = SqlQueue(warehouse, name=name)
    engine = get_engine(warehouse)
    report = drain(queue, engine=engine, wait_s=0.5)
    assert report.balanced and queue.depth() == 0, report.as_dict()
    fig = account_events(
        engine,
        ledger,
        f"slow clients ({', '.join(f'{n} {k}' for k, n in kinds.items())})",
        tables=["payments"],
        backend="sql-postgres",
    )
    fig.notes.append(
        f"{len(conns)} slow connections; still open after {WAIT_CLOSED_S}s: {left}; {ledger.attempts} POSTs"
    )
    record(fig, applied=GOOD, dead_lettered=0)
    assert not any(left.values()), f"slow connections the server never closed: {left}"


def test_slow_body_clients(served: tuple[str, str], warehouse: str, record: Callable[..., Figures]) -> None:
    _scenario(served, warehouse, record, {"body": 150})


def test_idle_and_slow_header_clients(
    served: tuple[str, str], warehouse: str, record: Callable[..., Figures]
) -> None:
    _scenario(served, warehouse, record, {"head": 75, "silent": 75})
