"""The receiver under a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integration_assets.cli.webhooks import server_options
from integration_assets.queue.sql import SqlQueue
from integration_assets.webhooks.app import create_app
from tests.support.receiver import serving

from .conftest import hubspot_body, hubspot_headers, stripe_event, stripe_headers, test_config


@pytest.fixture
def server(sqlite_warehouse: str, queue_name: str, isolated_env: Path) -> Iterator[tuple[str, object]]:
    app = create_app(queue_factory=lambda: SqlQueue(sqlite_warehouse, name=queue_name), config=test_config())
    with serving(app, **server_options()) as base:
        yield base, app


def test_real_server_accepts_concurrent_signed_events(
    server: tuple[str, object], sql_queue: SqlQueue
) -> None:
    base, app = server

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            bodies = [stripe_event(f"evt_u{i}") for i in range(100)]
            responses = await asyncio.gather(
                *(client.post("/webhooks/stripe", content=b, headers=stripe_headers(b)) for b in bodies)
            )
            hub = hubspot_body(1, 2)
            hub_r = await client.post(
                "/webhooks/hubspot", content=hub, headers=hubspot_headers(hub, uri=f"{base}/webhooks/hubspot")
            )
            return [r.status_code for r in responses] + [hub_r.status_code]

    assert set(asyncio.run(post_all())) == {200}
    assert sql_queue.depth() == 102
    assert app.state.metrics.batch_size_count() < 101  # type: ignore[attr-defined]
    with httpx.Client(base_url=base) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert 'webhook_events_enqueued_total{provider="stripe"} 100' in client.get("/metrics").text


def _status_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def test_real_server_refuses_20_mb_before_it_is_sent(server: tuple[str, object], sql_queue: SqlQueue) -> None:
    base, _app = server
    host, port = base.removeprefix("http://").split(":")
    head = (
        "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: t={int(time.time())},v1={'0' * 64}\r\nContent-Length: {20 << 20}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head + b" " * 65536)  # 64 KiB of the announced 20 MiB
        assert _status_line(sock) == b"HTTP/1.1 413 Request Entity Too Large"
    # Chunked, no length announced: reading stops at the cap.
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.replace(f"Content-Length: {20 << 20}".encode(), b"Transfer-Encoding: chunked"))
        chunk = b" " * 65536
        try:
            for _ in range(40):  # up to 2.5 MiB; the server answers after 1 MiB
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the server may close the connection once it has answered
        assert _status_line(sock) == b"HTTP/1.1 413 Request Entity Too Large"
    assert sql_queue.depth() == 0


def dribble(socks: list[socket.socket], byte: bytes) -> tuple[dict[socket.socket, bytes], int]:
    """Send ``byte`` on every socket now and then until the server has closed them all, or 60 s have passed
    (generous: this checks that they are closed at all, not how fast); returns what each received and how
    many are still open. Closes the sockets."""
    open_ = set(socks)
    answers: dict[socket.socket, bytes] = {s: b"" for s in socks}
    deadline = time.monotonic() + 60
    while open_ and time.monotonic() < deadline:
        for sock in list(open_):
            with contextlib.suppress(OSError):  # the server may have closed it already
                sock.send(byte)
        readable, _, _ = select.select(list(open_), [], [], 0.2)
        for sock in readable:
            try:
                data = sock.recv(4096)
            except OSError:  # reset: closed by the server with our dribble unread
                data = b""
            answers[sock] += data
            if not data:
                open_.discard(sock)
    for sock in socks:
        sock.close()
    return answers, len(open_)


def test_slow_bodies_are_cut_and_their_connections_closed(
    sqlite_warehouse: str, queue_name: str, isolated_env: Path, sql_queue: SqlQueue
) -> None:
    """200 clients send their headers, then dribble the body a byte at a time: each gets 408 and its
    connection is closed by the server, and a normal request is served meanwhile."""
    app = create_app(
        queue_factory=lambda: SqlQueue(sqlite_warehouse, name=queue_name),
        config=test_config(body_timeout_s=2.0),
    )
    with serving(app, **server_options()) as base:
        host, port = base.removeprefix("http://").split(":")
        body = stripe_event("evt_slow")
        sig_header = stripe_headers(body)["stripe-signature"]
        head = (
            "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: {sig_header}\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        slow: list[socket.socket] = []
        for _ in range(200):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(head + b"{")
            sock.setblocking(False)
            slow.append(sock)
        fast = stripe_event("evt_fast")
        with httpx.Client(base_url=base, timeout=10) as client:
            assert (
                client.post("/webhooks/stripe", content=fast, headers=stripe_headers(fast)).status_code == 200
            )
        answers, still_open = dribble(slow, b" ")
        assert not still_open, f"{still_open} slow connection(s) still open after 60 s"
        seen = [a.split(b"\r\n", 1)[0] for a in answers.values() if a]
        assert seen and set(seen) == {b"HTTP/1.1 408 Request Timeout"}
        metrics = app.state.metrics  # type: ignore[attr-defined]
        assert (
            metrics.value("webhook_requests_rejected_total", provider="stripe", reason="body_timeout") == 200
        )
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").json()["status"] == "ok"
    assert sql_queue.depth() == 1  # only the normal request's event


def test_slow_and_oversized_header_blocks_are_cut(
    sqlite_warehouse: str, queue_name: str, isolated_env: Path, sql_queue: SqlQueue
) -> None:
    """100 clients that send a request line and then a header byte now and then, and one that sends 100 KiB of
    headers at once: the server closes every one of them, and a normal request is served meanwhile."""
    app = create_app(queue_factory=lambda: SqlQueue(sqlite_warehouse, name=queue_name), config=test_config())
    with serving(app, **server_options(header_timeout_s=2.0)) as base:
        host, port = base.removeprefix("http://").split(":")
        slow: list[socket.socket] = []
        for _ in range(100):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            sock.setblocking(False)
            slow.append(sock)
        big = socket.create_connection((host, int(port)), timeout=5)
        with contextlib.suppress(OSError):  # the server may close it before all of it is sent
            big.sendall(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * (100 << 10))
        big.setblocking(False)
        fast = stripe_event("evt_fast_headers")
        with httpx.Client(base_url=base, timeout=10) as client:
            assert (
                client.post("/webhooks/stripe", content=fast, headers=stripe_headers(fast)).status_code == 200
            )
        _, still_open = dribble([*slow, big], b"a")
        assert not still_open, f"{still_open} connection(s) with unfinished headers still open after 60 s"
    assert sql_queue.depth() == 1
