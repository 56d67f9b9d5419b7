"""A real local HTTP server for the connector fakes: stdlib ``http.server`` in a thread on 127.0.0.1.

A fake answers with the provider's documented wire format (``connectors/<system>/fake.py``); this base adds
what tests need around it: a log of every request (time received, status sent, and for a 429/503 the
earliest instant the client was told it may come back), latency, and faults chosen per request
(:class:`Fault`: a status with body and headers, ``Retry-After`` as delay-seconds or an HTTP-date, a delay).
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeServer", "Fault", "LoggedRequest"]


@dataclass
class LoggedRequest:
    at: float  # wall clock when the request arrived
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int | None = None
    sent_at: float | None = None
    not_before: float | None = None  # Retry-After as an instant (for 429/503 answers that carried one)
    fault: str | None = None


@dataclass
class Fault:
    """Answer one request with this instead of the normal response (status 0: only add ``delay``)."""

    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # seconds from the moment the answer is sent
    retry_after_form: Literal["seconds", "date"] = "seconds"
    delay: float = 0.0
    label: str = ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that timed out and left
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, each answer waits for the client's delayed ACK
    # (~40 ms a call), which would swamp the latencies the fakes are set to.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self.server.fake._dispatch(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_PATCH = do_GET
    do_DELETE = do_GET


class FakeServer:
    """Start with :meth:`start` (or ``with``), point the client at :attr:`url`, inspect :attr:`requests`."""

    def __init__(self) -> None:
        self.requests: list[LoggedRequest] = []
        self.latency = 0.0  # seconds added before every answer (a slow downstream)
        self.fault: Callable[[LoggedRequest], Fault | None] | None = None
        self.lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # to implement
    def handle(self, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) of the normal answer."""
        raise NotImplementedError

    def extra_headers(self, req: LoggedRequest, status: int) -> dict[str, str]:
        """Headers every answer carries (e.g. rate-limit counters)."""
        return {}

    # helpers for tests
    def statuses(self) -> list[int | None]:
        with self.lock:
            return [r.status for r in self.requests]

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # the request loop
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        at = time.time()
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        req = LoggedRequest(at, h.command, parts.path, parse_qs(parts.query), dict(h.headers.items()), body)
        with self.lock:
            self.requests.append(req)
        fault = self.fault(req) if self.fault is not None else None
        delay = self.latency + (fault.delay if fault else 0.0)
        if delay > 0 and self._stopping.wait(delay):
            return
        if fault is not None and fault.status:
            status, headers, payload = fault.status, dict(fault.headers), fault.body
            req.fault = fault.label or f"{fault.status}"
        else:
            status, headers, payload = self.handle(req)
        headers = {**self.extra_headers(req, status), **headers}
        now = time.time()
        if fault is not None and fault.status and fault.retry_after is not None:
            if fault.retry_after_form == "date":
                # HTTP-date has whole seconds: round up so the instant is never earlier than intended.
                when = math.ceil(now + fault.retry_after)
                headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
                req.not_before = float(when)
            else:
                headers["Retry-After"] = str(int(fault.retry_after))
                req.not_before = now + int(fault.retry_after)
        req.status, req.sent_at = status, now
        data = (
            b""
            if payload is None
            else (payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8"))
        )
        try:
            h.send_response(status)
            if "Content-Type" not in headers:
                h.send_header("Content-Type", "application/json;charset=utf-8")
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) before the answer
