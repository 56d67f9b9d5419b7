"""The webhook receiver: verify, enqueue durably, answer. It never calls a downstream system.

``POST /webhooks/stripe|hubspot|easypost`` runs, in this order and before anything is enqueued:

==========================================  ======  ==========================
check                                       status  ``reason`` (metric label)
==========================================  ======  ==========================
provider secret not configured              503     not_configured
Content-Type is not application/json        415     unsupported_media_type
signature header(s) missing                 400     missing_signature
Content-Length above the cap                413     too_large
body above the cap while streaming it       413     too_large (reading stops)
body slower than ``body_timeout_s``         408     body_timeout (connection closed)
signature header malformed                  400     malformed_signature
signature does not match the raw bytes      401     bad_signature
timestamp older / newer than 300 s          400     stale_timestamp / future_timestamp
not UTF-8 JSON (or NaN/Infinity)            400     invalid_json
nested deeper than ``max_json_depth``       400     too_deep (found without parsing)
no provider event id / event type           400     invalid_payload
HubSpot body not a non-empty JSON array     400     invalid_payload
publisher backlog full                      503     overloaded
queue down, no confirm/commit in time       503     queue_unavailable
==========================================  ======  ==========================

A 200 means every event of the request is durably stored: a publisher confirm (RabbitMQ) or a committed
row (SQL). Replays inside the signature window are accepted: dedup happens downstream on the event key
(``queue.keys``). A HubSpot batch is split, not refused: an element that is not an event is stored too,
marked for the dead letters (``{"accepted": n, "dead_lettered": m}``), and the others are applied.

Throughput: requests do not publish themselves. One publisher thread owns the queue; it takes every
request waiting (lingering ``batch_linger_s`` for more), publishes them as one batch (one transaction on
SQL; on RabbitMQ all messages sent, then all confirms awaited) and only then resolves each request's
future. Under load the batch grows by itself while the previous one is being confirmed. (Measured on
RabbitMQ: ~355 µs of server CPU per request this way, ~457 µs when each request published on the event
loop through pika's AsyncioConnection, whose confirms come back in smaller groups.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue as stdlib_queue
import re
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from integration_assets.errors import TerminalError
from integration_assets.queue import (
    REJECT_CHECK_HEADER,
    REJECT_REASON_HEADER,
    Message,
    Queue,
    QueueError,
    QueueUnavailable,
    TransientQueueError,
    open_queue,
)
from integration_assets.queue.keys import CONTENT_HEADER, content_fingerprint, hubspot_event_key
from integration_assets.settings import ENV_VARS, get_settings
from integration_assets.webhooks import signatures as sig
from integration_assets.webhooks.metrics import CONTENT_TYPE, PROVIDERS, WebhookMetrics, event_key_metrics

log = logging.getLogger(__name__)

# Deeper than any provider payload (Stripe objects nest < 10 levels); far below what blows Python's stack.
DEFAULT_MAX_JSON_DEPTH = 64
# Request headers kept with the message: diagnostic and not secret. Signatures, tokens and cookies never.
KEPT_HEADERS = ("content-type", "user-agent", "x-request-id", "x-hubspot-request-timestamp")
_EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,200}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _env(name: str) -> str | None:
    """A registered variable (settings.ENV_VARS), or its registered default."""
    value = os.environ.get(name) or None
    return value if value is not None else ENV_VARS[name][0]


@dataclass(frozen=True)
class WebhookConfig:
    """Receiver settings. Secrets come only from environment variables and are never logged or shown."""

    stripe_secrets: tuple[str, ...] = field(default=(), repr=False)
    hubspot_secret: str | None = field(default=None, repr=False)
    easypost_secret: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1 << 20
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    tolerance_s: float = sig.DEFAULT_TOLERANCE_S
    # The whole body must arrive within this, counted from the request's headers: a client that dribbles
    # its body gets 408 and its connection is closed, instead of holding a connection and a task for ever.
    body_timeout_s: float = 10.0
    # scheme://host[:port] HubSpot posts to, when it differs from what the server sees (TLS proxy).
    public_url: str | None = None
    enqueue_timeout_s: float = 30.0
    max_batch: int = 500
    batch_linger_s: float = 0.001
    max_pending_requests: int = 10_000
    # Publisher threads, each with its own connection: while one waits for the broker's confirms of its
    # batch, the next publishes the requests that arrived meanwhile.
    publishers: int = 2

    @classmethod
    def from_env(cls, **overrides: Any) -> WebhookConfig:
        values: dict[str, Any] = {
            "stripe_secrets": sig.parse_stripe_secrets(os.environ.get("STRIPE_WEBHOOK_SECRET")),
            "hubspot_secret": os.environ.get("HUBSPOT_CLIENT_SECRET") or None,
            "easypost_secret": os.environ.get("EASYPOST_WEBHOOK_SECRET") or None,
            "max_body_bytes": int(_env("INTEGRATION_WEBHOOK_MAX_BYTES") or 1 << 20),
            "public_url": (_env("INTEGRATION_WEBHOOK_PUBLIC_URL") or "").rstrip("/") or None,
            "publishers": max(1, int(_env("INTEGRATION_WEBHOOK_PUBLISHERS") or 2)),
            "body_timeout_s": float(_env("INTEGRATION_WEBHOOK_BODY_TIMEOUT_SECONDS") or 10),
        }
        values.update(overrides)
        return cls(**values)

    def configured(self, provider: str) -> bool:
        return bool(
            {"stripe": self.stripe_secrets, "hubspot": self.hubspot_secret, "easypost": self.easypost_secret}[
                provider
            ]
        )


class Rejected(TerminalError):
    """A request refused before anything was enqueued."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}: {detail}" if detail else f"{status} {reason}")
        self.status, self.reason = status, reason


class Overloaded(TransientQueueError):
    """Too many requests are waiting for the publisher: shed load with 503 rather than queue in memory."""


# ---------------------------------------------------------------------------------------- payloads
def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Parse a UTF-8 JSON body, refusing nesting deeper than ``max_depth`` before the parser sees it.

    Python's parser recurses per level, so depth is measured first, iteratively: strings are blanked out
    with one regex pass, then only the bracket bytes are walked (a 100k-deep body stops at level 65)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, "invalid_json", "body is not UTF-8") from exc
    # Fewer opening brackets than the limit, strings included, cannot nest deeper: the usual case.
    if body.count(b"[") + body.count(b"{") > max_depth:
        depth = 0
        for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
            if byte in (0x5B, 0x7B):  # [ {
                depth += 1
                if depth > max_depth:
                    raise Rejected(400, "too_deep", f"JSON nested deeper than {max_depth}")
            else:
                depth -= 1
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, "invalid_json", "body is not JSON") from exc


def _kept_headers(request: Request, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    kept = {name: request.headers[name][:256] for name in KEPT_HEADERS if name in request.headers}
    kept.update(extra or {})
    return kept


def _event_type(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _EVENT_TYPE.match(value):
        raise Rejected(400, "invalid_payload", f"{what} missing or malformed")
    return value


def _with_fingerprint(headers: dict[str, str], source: str, doc: Any) -> dict[str, str]:
    return {**headers, CONTENT_HEADER: content_fingerprint(source, doc)}


def stripe_messages(doc: Any, body: bytes, headers: dict[str, str], received_at: datetime) -> list[Message]:
    """A Stripe delivery is one Event object; the key is its ``evt_…`` id."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not _EVENT_ID.match(doc["id"]):
        raise Rejected(400, "invalid_payload", "not a Stripe event (id evt_…)")
    return [
        Message(
            id=f"stripe:{doc['id']}",
            source="stripe",
            event_type=_event_type(doc.get("type"), "type"),
            body=body,
            headers=_with_fingerprint(headers, "stripe", doc),
            received_at=received_at,
        )
    ]


def _hubspot_element_error(event: Any) -> str | None:
    """Why one element of a HubSpot batch cannot be queued as an event (None: it can)."""
    if not isinstance(event, dict):
        return f"element is a JSON {type(event).__name__}, not an object"
    event_id = event.get("eventId")
    if isinstance(event_id, bool) or not (
        (isinstance(event_id, int) and event_id >= 0) or (isinstance(event_id, str) and event_id.isdigit())
    ):
        return "element has no numeric eventId"
    kind = event.get("subscriptionType")
    if not isinstance(kind, str) or not _EVENT_TYPE.match(kind):
        return "element has no valid subscriptionType"
    return None


def hubspot_messages(doc: Any, headers: dict[str, str], received_at: datetime) -> list[Message]:
    """A HubSpot delivery is a JSON array of events: one message per element, keyed by the fields that
    identify the change (``queue.keys.hubspot_event_key``: ``eventId`` alone is not unique). The signature
    covers the whole array, so each element (already verified) is re-encoded on its own.

    A batch is split, not refused: an element that is not an event (not an object, no numeric ``eventId``,
    no ``subscriptionType``) is queued as a message marked ``x-receiver-check``/``x-receiver-reason``, which
    the drain dead-letters with that reason (stage ``event``, the raw element kept) while the valid elements
    are applied. Only a body that is not a non-empty array is refused."""
    if not isinstance(doc, list) or not doc:
        raise Rejected(400, "invalid_payload", "HubSpot sends a non-empty JSON array")
    messages = []
    for index, event in enumerate(doc):
        # ASCII escapes: a lone surrogate in the input must not make the encoding fail.
        body = json.dumps(event, separators=(",", ":")).encode("ascii")
        element_headers = {
            **headers,
            "x-hubspot-batch-index": str(index),
            "x-hubspot-batch-size": str(len(doc)),
            CONTENT_HEADER: content_fingerprint("hubspot", event),
        }
        error = _hubspot_element_error(event)
        if error is None:
            messages.append(
                Message(
                    id=hubspot_event_key(event),
                    source="hubspot",
                    event_type=event["subscriptionType"],
                    body=body,
                    headers=element_headers,
                    received_at=received_at,
                )
            )
            continue
        kind = event.get("subscriptionType") if isinstance(event, dict) else None
        element_headers[REJECT_CHECK_HEADER] = "invalid_payload"
        element_headers[REJECT_REASON_HEADER] = f"HubSpot batch element {index} of {len(doc)}: {error}"
        messages.append(
            Message(
                # Keyed by content: a redelivered batch gives the same key, so its dead letter is not doubled.
                id=f"hubspot:invalid:{element_headers[CONTENT_HEADER][:32]}",
                source="hubspot",
                event_type=kind if isinstance(kind, str) and _EVENT_TYPE.match(kind) else "invalid",
                body=body,
                headers=element_headers,
                received_at=received_at,
            )
        )
    return messages


def easypost_messages(doc: Any, body: bytes, headers: dict[str, str], received_at: datetime) -> list[Message]:
    """An EasyPost delivery is one Event object; the key is its ``evt_…`` id, the type its description."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not _EVENT_ID.match(doc["id"]):
        raise Rejected(400, "invalid_payload", "not an EasyPost event (id evt_…)")
    return [
        Message(
            id=f"easypost:{doc['id']}",
            source="easypost",
            event_type=_event_type(doc.get("description"), "description"),
            body=body,
            headers=_with_fingerprint(headers, "easypost", doc),
            received_at=received_at,
        )
    ]


# --------------------------------------------------------------------------------------- publisher
@dataclass(eq=False)
class _Job:
    provider: str
    messages: list[Message]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    submitted: float


class Enqueuer:
    """Publisher threads that publish the messages of concurrent requests in batches.

    Each thread owns its own queue connection and takes the next batch from one shared inbox, so while one
    waits for the confirms (or the commit) of its batch, another publishes what arrived in the meantime.
    """

    def __init__(
        self,
        queue_factory: Callable[[], Queue],
        metrics: WebhookMetrics,
        *,
        max_batch: int = 500,
        linger_s: float = 0.001,
        max_pending: int = 10_000,
        keepalive_s: float = 1.0,
        threads: int = 1,
    ) -> None:
        self._factory = queue_factory
        self.threads = max(1, threads)
        self._metrics = metrics
        self.max_batch, self.linger_s, self.max_pending, self.keepalive_s = (
            max_batch,
            linger_s,
            max_pending,
            keepalive_s,
        )
        self._inbox: stdlib_queue.SimpleQueue[_Job | None] = stdlib_queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._writer_turn = threading.Lock()  # for queues that take one writer at a time (SQLite)
        self._stopped = False
        # Outcome of each publisher thread's last publish: the receiver is only "ok" when all of them are.
        self._outcomes: dict[str, str | None] = {}  # thread name -> None (ok) or the error

    @property
    def state(self) -> str:
        """idle | ok | unavailable | stopped (unavailable while any publisher thread's last publish failed)."""
        if self._stopped:
            return "stopped"
        outcomes = list(self._outcomes.values())
        if not outcomes:
            return "idle"
        return "unavailable" if any(o is not None for o in outcomes) else "ok"

    @property
    def last_error(self) -> str | None:
        return next((o for o in list(self._outcomes.values()) if o is not None), None)

    @property
    def running(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        with self._start_lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"webhook-publisher-{i}", daemon=True)
                    for i in range(self.threads)
                ]
                for t in self._threads:
                    t.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self, timeout_s: float = 30.0) -> None:
        """Publish what is already waiting, then close the queue."""
        if not self._threads:
            return
        for _ in self._threads:
            self._inbox.put(None)  # one stop mark per thread; each takes exactly one and ends
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._stopped = True
        leftovers: list[_Job] = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except stdlib_queue.Empty:
                break
            if job is not None:
                leftovers.append(job)
        if leftovers:
            self._settle_all(leftovers, QueueUnavailable("receiver shutting down"))

    async def enqueue(self, provider: str, messages: list[Message], timeout_s: float) -> None:
        """Return once every message is durably stored; raise a ``QueueError`` otherwise."""
        if self.state == "stopped":
            raise QueueUnavailable("receiver shutting down")
        self.start()
        if not self.running:  # never expected (the thread catches everything), but never wait on a dead one
            raise QueueUnavailable("publisher thread is not running")
        if self._inbox.qsize() >= self.max_pending:
            raise Overloaded(f"{self.max_pending} requests already wait for the publisher")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._inbox.put(_Job(provider, messages, future, loop, time.perf_counter()))
        try:
            async with asyncio.timeout(timeout_s):  # no wrapper task per request, unlike wait_for
                await future
        except TimeoutError as exc:
            raise QueueUnavailable(f"not confirmed within {timeout_s}s") from exc

    def _run(self) -> None:
        slot: list[Queue] = []  # this thread's queue, opened on first use
        stopping = False
        while not stopping:
            try:
                first = self._inbox.get(timeout=self.keepalive_s)
            except stdlib_queue.Empty:
                if slot:
                    slot[0].keepalive()
                continue
            if first is None:
                break
            jobs, size = [first], len(first.messages)
            deadline = time.monotonic() + self.linger_s
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = self._inbox.get(timeout=remaining) if remaining > 0 else self._inbox.get_nowait()
                except stdlib_queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                size += len(job.messages)
            self._publish(jobs, slot)
        if slot:
            slot[0].close()

    def _publish(self, jobs: Sequence[_Job], slot: list[Queue]) -> None:
        messages = [m for job in jobs for m in job.messages]
        self._metrics.batch_size.observe(len(messages))
        error: QueueError | None = None
        try:
            if not slot:
                slot.append(self._factory())
            queue = slot[0]
            with contextlib.nullcontext() if queue.concurrent_writers else self._writer_turn:
                queue.publish_many(messages)
                outcome = queue.last_publish
            for source in outcome.duplicates:
                self._metrics.key_duplicates.inc(source)
            for source in outcome.collisions:
                self._metrics.key_collisions.inc(source)
        except QueueError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the thread must survive anything; the requests get 503
            log.exception("publish of %d message(s) failed unexpectedly", len(messages))
            error = QueueUnavailable(f"publish failed: {type(exc).__name__}")
        if error is None:
            self._outcomes[threading.current_thread().name] = None
        else:
            reason = f"{type(error).__name__}: {error}"
            self._outcomes[threading.current_thread().name] = reason
            self._metrics.publish_failures.inc(type(error).__name__)
            log.warning("publish of %d message(s) failed: %s", len(messages), reason)
        self._settle_all(jobs, error)

    def _settle_all(self, jobs: Sequence[_Job], error: QueueError | None) -> None:
        failed_ids = set(error.message_ids) if error is not None else set()
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, QueueError | None]]] = defaultdict(list)
        for job in jobs:
            # When the backend names the failed messages (a nack, a return), the other requests succeeded.
            failed = error is not None and (not failed_ids or any(m.id in failed_ids for m in job.messages))
            by_loop[job.loop].append((job, error if failed else None))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, items)
            except RuntimeError:
                log.debug("event loop closed; %d request(s) gone", len(items))

    def _settle(self, items: Sequence[tuple[_Job, QueueError | None]]) -> None:
        now = time.perf_counter()
        for job, error in items:
            if job.future.done():  # timed out or the client went away
                continue
            if error is None:
                self._metrics.enqueue_seconds.observe(now - job.submitted, job.provider)
                job.future.set_result(None)
            else:
                job.future.set_exception(error)


# ------------------------------------------------------------------------------------------- app
def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=dict(headers or {}))


_SIGNATURE_HEADERS = {
    "stripe": ("stripe-signature",),
    "hubspot": ("x-hubspot-signature-v3", "x-hubspot-request-timestamp"),
    "easypost": ("x-hmac-signature",),
}


class WebhookReceiver:
    """Request handling, separated from routing so tests can drive it with their own queue."""

    def __init__(
        self,
        config: WebhookConfig,
        publisher: Enqueuer,
        metrics: WebhookMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.publisher, self.metrics, self.clock = config, publisher, metrics, clock

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise Rejected(400, "bad_content_length")
            if int(length) > limit:
                raise Rejected(413, "too_large", f"Content-Length {length} > {limit}")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        # Stop reading here: the rest of the body is never buffered.
                        raise Rejected(413, "too_large", f"body > {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise Rejected(
                408, "body_timeout", f"body not received within {self.config.body_timeout_s:g}s"
            ) from exc
        return b"".join(chunks)

    def _hubspot_uri(self, request: Request) -> str:
        if not self.config.public_url:
            return str(request.url)
        query = request.url.query
        return f"{self.config.public_url}{request.url.path}" + (f"?{query}" if query else "")

    async def verified_messages(self, request: Request, provider: str) -> list[Message]:
        """Everything up to (not including) the enqueue: the checks of the module docstring, in order."""
        if not self.config.configured(provider):
            raise Rejected(503, "not_configured", f"no {provider} webhook secret configured")
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise Rejected(415, "unsupported_media_type")
        if any(not request.headers.get(h) for h in _SIGNATURE_HEADERS[provider]):
            raise Rejected(400, "missing_signature")
        body = await self._read_body(request)
        received_at = datetime.now(UTC)
        h = request.headers
        cfg = self.config
        try:
            if provider == "stripe":
                t = sig.verify_stripe(
                    body,
                    h.get("stripe-signature"),
                    cfg.stripe_secrets,
                    tolerance_s=cfg.tolerance_s,
                    clock=self.clock,
                )
                headers = _kept_headers(request, {"x-stripe-signature-timestamp": str(t)})
            elif provider == "hubspot":
                sig.verify_hubspot_v3(
                    method=request.method,
                    uri=self._hubspot_uri(request),
                    body=body,
                    signature=h.get("x-hubspot-signature-v3"),
                    timestamp=h.get("x-hubspot-request-timestamp"),
                    client_secret=cfg.hubspot_secret,
                    tolerance_s=cfg.tolerance_s,
                    clock=self.clock,
                )
                headers = _kept_headers(request)
            else:
                sig.verify_easypost(body, h.get("x-hmac-signature"), cfg.easypost_secret)
                headers = _kept_headers(request)
        except sig.SignatureError as exc:
            raise Rejected(exc.status, exc.reason) from exc
        doc = parse_json(body, cfg.max_json_depth)
        if provider == "stripe":
            return stripe_messages(doc, body, headers, received_at)
        if provider == "hubspot":
            return hubspot_messages(doc, headers, received_at)
        return easypost_messages(doc, body, headers, received_at)

    async def handle(self, request: Request, provider: str) -> Response:
        self.metrics.received.inc(provider)
        try:
            messages = await self.verified_messages(request, provider)
        except Rejected as exc:
            self.metrics.rejected.inc(provider, exc.reason)
            # The rest of a body that timed out is not worth waiting for: close the connection after the 408.
            return _error(exc.status, exc.reason, {"Connection": "close"} if exc.status == 408 else None)
        except ClientDisconnect:
            self.metrics.rejected.inc(provider, "client_disconnected")
            return _error(400, "client_disconnected")
        try:
            await self.publisher.enqueue(provider, messages, self.config.enqueue_timeout_s)
        except Overloaded:
            self.metrics.rejected.inc(provider, "overloaded")
            return _error(503, "overloaded", {"Retry-After": "5"})
        except QueueError:
            # Logged by the publisher thread (once per batch, not once per request).
            self.metrics.rejected.inc(provider, "queue_unavailable")
            return _error(503, "queue_unavailable", {"Retry-After": "30"})
        invalid = sum(1 for m in messages if REJECT_CHECK_HEADER in m.headers)
        self.metrics.accepted.inc(provider)
        self.metrics.events.inc(provider, amount=len(messages) - invalid)
        if invalid:
            self.metrics.invalid_elements.inc(provider, amount=invalid)
            return JSONResponse({"accepted": len(messages) - invalid, "dead_lettered": invalid})
        return JSONResponse({"accepted": len(messages)})


def create_app(
    *,
    queue_url: str | None = None,
    queue_factory: Callable[[], Queue] | None = None,
    config: WebhookConfig | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver as an ASGI app, publishing to ``queue_url`` (default ``INTEGRATION_QUEUE_URL``), or to
    the queues ``queue_factory`` builds (called once in each publisher thread: it must return a new queue
    each time). ``clock`` is for tests."""
    config = config or WebhookConfig.from_env()
    metrics = WebhookMetrics()
    url = queue_url or get_settings().queue_url
    publisher = Enqueuer(
        queue_factory or (lambda: open_queue(url)),
        metrics,
        max_batch=config.max_batch,
        linger_s=config.batch_linger_s,
        max_pending=config.max_pending_requests,
        threads=config.publishers,
    )
    receiver = WebhookReceiver(config, publisher, metrics, clock)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        missing = [p for p in PROVIDERS if not config.configured(p)]
        if missing:
            log.warning("webhook secrets not set for %s: those endpoints answer 503", ", ".join(missing))
        publisher.start()
        yield
        await publisher.stop()

    def endpoint(provider: str) -> Callable[[Request], Any]:
        async def receive(request: Request) -> Response:
            return await receiver.handle(request, provider)

        return receive

    async def healthz(_request: Request) -> Response:
        alive = publisher.running or publisher.state == "idle"
        body = {
            "status": "ok" if alive else "down",
            "publisher": publisher.state,
            "providers": {p: config.configured(p) for p in PROVIDERS},
        }
        if publisher.last_error:
            body["last_error"] = publisher.last_error[:300]
        return JSONResponse(body, status_code=200 if alive else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        # Receiver counters, then the pipeline's gauges from the warehouse (queried off the event loop).
        from starlette.concurrency import run_in_threadpool

        from integration_assets.observability.metrics import pipeline_metrics
        from integration_assets.warehouse.db import get_engine

        engine = get_engine()
        body = (
            metrics.render()
            + await run_in_threadpool(lambda: pipeline_metrics(engine))
            + await run_in_threadpool(lambda: event_key_metrics(engine))
        )
        return PlainTextResponse(body, media_type=CONTENT_TYPE)

    routes = [Route(f"/webhooks/{p}", endpoint(p), methods=["POST"]) for p in PROVIDERS]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.publisher = publisher
    app.state.config = config
    return app
