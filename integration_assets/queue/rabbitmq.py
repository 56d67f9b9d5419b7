"""RabbitMQ backend (pika ``BlockingConnection``): quorum queues, publisher confirms, a DLX and retry tiers.

Topology, all names prefixed with ``prefix`` (URL option, default ``integration``) so that several
environments and tests can share a broker::

    <p>.events (direct exchange) --event--> <p>.events (quorum queue)
        x-delivery-limit = max_attempts - 1   explicit: RabbitMQ 3.10 has no default limit
        x-dead-letter-exchange = <p>.dlx, x-dead-letter-strategy = at-least-once, x-overflow = reject-publish
    <p>.dlx (direct exchange) --dead--> <p>.dlq (quorum queue; drained into the warehouse dead_letters)
    <p>.retry (direct exchange) --<ms>--> <p>.retry.<ms>ms (quorum queue per delay tier)
        x-message-ttl = <ms>, dead-letters (at-least-once) back to <p>.events with routing key ``event``

Retry with delay: republish-then-ack. ``retry`` publishes a copy (confirmed, mandatory) to the retry tier
at or above the wanted delay, carrying the attempts used so far in the ``x-ia-attempts`` header, then
acks the original. When the TTL expires the broker dead-letters the copy back to the main queue. A crash
between the confirm and the ack leaves two copies: consumers deduplicate on the message id anyway. The
delay is rounded up to the next tier (``retry_delays_s``), because a quorum queue only expires messages
at its head, so each delay needs its own queue.

Attempts of a delivery = ``x-ia-attempts`` (attempts spent by earlier copies) + ``x-delivery-count``
(returns of this copy: crash, channel close) + 1. Crash loops are stopped by the broker's delivery limit
(dead-lettered with reason ``delivery_limit``); anything beyond ``max_attempts`` that still arrives is
dead-lettered by ``receive``.

Dead letters: ``dead_letter`` publishes a copy to the DLX carrying the reason and check name in headers,
then acks the original; the broker sends delivery-limit casualties there too. ``drain_dead_letters``
moves the DLQ into the warehouse ``dead_letters`` table and acks only after the commit, so review and
replay happen in one place whatever the backend.

Publishing waits for the broker's confirm of every message of a batch, but sends the whole batch before
waiting: ``BlockingChannel.basic_publish`` in confirm mode waits for each confirm in turn, which caps a
publisher at one round trip per message (~1,300 msg/s measured here). So confirm mode is driven on the
channel's underlying ``pika.channel.Channel`` (``BlockingChannel._impl``, pika pinned in
requirements.lock) and the I/O loop runs until every delivery tag is acked, nacked or returned.
(Measured alternative: publishing per request on the receiver's event loop with pika's
``AsyncioConnection`` needs no private attribute, but cost ~457 µs of server CPU per webhook request
against ~355 µs for this batched path, and more broker CPU, because confirms come in smaller groups.)

URL options (removed before the URL is handed to pika, which accepts its own, e.g. ``heartbeat``)::

    prefix, max_attempts, prefetch, confirm_timeout_s, reconnect_max_s, retry_delays_s (comma list),
    max_length, backoff_base_s, backoff_cap_s
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
import pika.exceptions as pex
import sqlalchemy as sa
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from integration_assets.queue.base import (
    SOURCES,
    Delivery,
    InvalidMessage,
    Message,
    PublishNacked,
    PublishUnroutable,
    Queue,
    QueueConfigError,
    QueueUnavailable,
    RetryOutcome,
    StaleDelivery,
    backoff_delay,
    truncate_reason,
)
from integration_assets.queue.sql import EventDeadLetter, classify_db_error, write_dead_letters
from integration_assets.warehouse.db import get_engine

log = logging.getLogger(__name__)

EVENT_KEY = "event"
DEAD_KEY = "dead"
# How long receive() waits for more of a batch once messages arrive (prefetched deliveries come in bursts).
RECEIVE_LINGER_S = 0.005
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Headers the broker adds on (re)delivery and dead-lettering; never copied into a republished message.
_BROKER_HEADERS = (
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)

# Failures of the connection or channel that a new connection can cure.
_LOST = (pex.AMQPConnectionError, pex.ChannelWrongStateError, pex.ChannelClosed, OSError)
_AUTH = (pex.AuthenticationError, pex.ProbableAuthenticationError, pex.ProbableAccessDeniedError)


@dataclass(frozen=True)
class RabbitMQConfig:
    """Connection URL for pika plus our options; built from an ``amqp://`` URL by ``from_url``."""

    url: str
    prefix: str = "integration"
    max_attempts: int = 5
    # Bounded prefetch (RELIABILITY.md: <= 50): with a crash-looping consumer every outstanding delivery
    # counts towards the delivery limit, so the window is also the blast radius.
    prefetch: int = 50
    confirm_timeout_s: float = 10.0
    # Reconnect budget per call. Short by default: a webhook request waits on it before answering 503.
    reconnect_max_s: float = 5.0
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    max_length: int | None = None
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0

    _OPTIONS = (
        "prefix",
        "max_attempts",
        "prefetch",
        "confirm_timeout_s",
        "reconnect_max_s",
        "retry_delays_s",
        "max_length",
        "backoff_base_s",
        "backoff_cap_s",
    )

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise QueueConfigError(f"prefix must match {_PREFIX_RE.pattern}: {self.prefix=!r}")
        # AMQP's prefetch-count is a 16-bit field; a batch-applying consumer (events drain) holds two batches.
        if self.max_attempts < 1 or not 1 <= self.prefetch <= 65535:
            raise QueueConfigError(
                f"need max_attempts >= 1 and 1 <= prefetch <= 65535 ({self.max_attempts=}, {self.prefetch=})"
            )
        if not self.retry_delays_s or any(d <= 0 for d in self.retry_delays_s):
            raise QueueConfigError(f"retry_delays_s must be positive: {self.retry_delays_s=}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RabbitMQConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise QueueConfigError(f"not an AMQP URL: scheme {parts.scheme!r}")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in pairs if k in cls._OPTIONS}
        rest = [(k, v) for k, v in pairs if k not in cls._OPTIONS]
        kwargs: dict[str, Any] = {}
        try:
            for key, value in ours.items():
                if key == "prefix":
                    kwargs[key] = value
                elif key in ("max_attempts", "prefetch", "max_length"):
                    kwargs[key] = int(value)
                elif key == "retry_delays_s":
                    kwargs[key] = tuple(float(v) for v in value.split(",") if v.strip())
                else:
                    kwargs[key] = float(value)
        except ValueError as exc:
            raise QueueConfigError(f"bad queue URL option: {exc}") from exc
        kwargs.update(overrides)
        return cls(url=urlunsplit(parts._replace(query=urlencode(rest))), **kwargs)

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def queue(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def retry_exchange(self) -> str:
        return f"{self.prefix}.retry"

    @property
    def retry_tiers_ms(self) -> tuple[int, ...]:
        return tuple(sorted({max(1, int(d * 1000)) for d in self.retry_delays_s}))

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}ms"

    @property
    def delivery_limit(self) -> int:
        # On 3.10 a quorum queue with x-delivery-limit=L delivers a message L+1 times, then dead-letters it
        # (verified on this broker: limit 2 gave deliveries with x-delivery-count 0, 1, 2).
        return self.max_attempts - 1

    def main_queue_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dlx,
            "x-dead-letter-routing-key": DEAD_KEY,
            # Classic dead-lettering republishes without confirms (lossy); at-least-once needs reject-publish.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        return args

    def retry_queue_arguments(self, delay_ms: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": self.exchange,
            "x-dead-letter-routing-key": EVENT_KEY,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def redacted_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" if parts.password else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=""))


def topology(config: RabbitMQConfig) -> list[tuple[str, dict[str, Any]]]:
    """The declarations, in order, as (channel method, keyword arguments): shared by the blocking queue and
    the asyncio publisher so both always declare the same thing."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("exchange_declare", {"exchange": config.exchange, "exchange_type": "direct", "durable": True}),
        ("exchange_declare", {"exchange": config.dlx, "exchange_type": "direct", "durable": True}),
        ("exchange_declare", {"exchange": config.retry_exchange, "exchange_type": "direct", "durable": True}),
        ("queue_declare", {"queue": config.dlq, "durable": True, "arguments": {"x-queue-type": "quorum"}}),
        ("queue_bind", {"queue": config.dlq, "exchange": config.dlx, "routing_key": DEAD_KEY}),
        (
            "queue_declare",
            {"queue": config.queue, "durable": True, "arguments": config.main_queue_arguments()},
        ),
        ("queue_bind", {"queue": config.queue, "exchange": config.exchange, "routing_key": EVENT_KEY}),
    ]
    for delay_ms in config.retry_tiers_ms:
        name = config.retry_queue(delay_ms)
        steps.append(
            (
                "queue_declare",
                {"queue": name, "durable": True, "arguments": config.retry_queue_arguments(delay_ms)},
            )
        )
        steps.append(
            ("queue_bind", {"queue": name, "exchange": config.retry_exchange, "routing_key": str(delay_ms)})
        )
    return steps


def declare_topology(channel: BlockingChannel, config: RabbitMQConfig) -> None:
    """Declare exchanges, queues and bindings (idempotent). Raises pika's ChannelClosedByBroker (406) when a
    queue already exists with other arguments: queue arguments cannot change, delete the queue or use a
    policy."""
    for method, kwargs in topology(config):
        getattr(channel, method)(**kwargs)


def message_properties(
    m: Message, attempts: int, extra: Mapping[str, Any] | None = None
) -> pika.BasicProperties:
    """AMQP properties of an event: persistent, the idempotency key as message_id, the event type as type,
    and our metadata (source, received_at, non-secret headers, attempts so far) in x-ia-* headers."""
    headers: dict[str, Any] = {
        "x-ia-source": m.source,
        "x-ia-received-at": m.received_at.isoformat(),
        "x-ia-headers": json.dumps(dict(m.headers), sort_keys=True),
        "x-ia-attempts": attempts,
    }
    if extra:
        headers.update(extra)
    return pika.BasicProperties(
        message_id=m.id,
        type=m.event_type,
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        timestamp=int(m.received_at.timestamp()),
        app_id="integration_assets",
        headers=headers,
    )


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _reconnectable(exc: BaseException) -> bool:
    """Worth another connection attempt: not refused credentials, not a topology the broker rejected."""
    return isinstance(exc, _LOST) and not isinstance(exc, _AUTH + (pex.ChannelClosedByBroker,))


def _coalesce_output(channel_impl: Any) -> None:
    """Join the frames queued on the channel's connection into one buffer before they are flushed.

    pika queues every AMQP frame as its own buffer and sends each with its own ``send`` (three per published
    message, one per ack); for a batch that is thousands of system calls. The bytes and their order are
    unchanged. Reaches into pika's transport (version pinned); without those attributes it does nothing."""
    transport = getattr(getattr(channel_impl, "connection", None), "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    if buffers is None or len(buffers) < 2:
        return
    joined = b"".join(buffers)
    buffers.clear()
    buffers.append(joined)


def _noop() -> None:
    """Timer callback whose only effect is to end a ``process_data_events`` wait early."""


@dataclass(eq=False)
class _ConfirmBatch:
    pending: dict[int, str] = field(default_factory=dict)  # delivery tag -> message id
    nacked: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    return_reasons: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Receipt:
    generation: int  # connection generation: tags of an older connection cannot be settled
    delivery_tag: int


@dataclass(frozen=True, slots=True)
class _Raw:
    generation: int
    delivery_tag: int
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes


class RabbitMQQueue(Queue):
    """The event queue on RabbitMQ. Connects lazily; every call reconnects (capped exponential backoff
    with jitter, within ``reconnect_max_s``) if the connection was lost, else raises ``QueueUnavailable``."""

    backend = "rabbitmq"

    def __init__(
        self, url: str, *, warehouse_url: str | None = None, config: RabbitMQConfig | None = None
    ) -> None:
        self.config = config or RabbitMQConfig.from_url(url)
        self.max_attempts = self.config.max_attempts
        self.warehouse_url = warehouse_url
        try:
            self._params = pika.URLParameters(self.config.url)
        except ValueError as exc:
            raise QueueConfigError(f"bad AMQP URL {self.config.redacted_url()}: {exc}") from exc
        # We retry connections ourselves (tenacity); pika's own attempts would multiply the wait.
        self._params.connection_attempts = 1
        if "blocked_connection_timeout" not in self.config.url:
            # A broker in a memory/disk alarm blocks publishers; give up on that connection after a minute.
            self._params.blocked_connection_timeout = 60.0
        self._conn: BlockingConnection | None = None
        self._ch: BlockingChannel | None = None
        self._generation = 0
        self._publish_seq = 0
        self._confirms: _ConfirmBatch | None = None
        self._consumer_tag: str | None = None
        self._buffer: deque[_Raw] = deque()
        self._held: dict[int, datetime] = {}  # delivery tag -> received_at, handed out and not settled

    def __repr__(self) -> str:
        return f"RabbitMQQueue({self.config.redacted_url()}, prefix={self.config.prefix!r})"

    # ------------------------------------------------------------------------------ connection
    def _reset(self) -> None:
        """Forget the connection; everything it had delivered is requeued by the broker."""
        conn, self._conn, self._ch = self._conn, None, None
        self._consumer_tag = None
        self._confirms = None
        self._buffer.clear()
        self._held.clear()
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except (pex.AMQPError, OSError) as exc:
                log.debug("closing a broken connection failed: %r", exc)

    def _connect_once(self) -> None:
        conn = BlockingConnection(self._params)
        try:
            ch = conn.channel()
            declare_topology(ch, self.config)
            impl = ch._impl  # see the module docstring: pipelined confirms need the underlying channel
            selected: list[bool] = []
            impl.confirm_delivery(
                ack_nack_callback=self._on_confirm, callback=lambda _frame: selected.append(True)
            )
            impl.add_on_return_callback(self._on_return)
            deadline = time.monotonic() + self.config.confirm_timeout_s
            while not selected:
                if time.monotonic() > deadline:
                    raise pex.AMQPConnectionError("Confirm.Select was not answered in time")
                conn.process_data_events(time_limit=0.01)
        except BaseException:
            if conn.is_open:
                conn.close()
            raise
        self._conn, self._ch = conn, ch
        self._generation += 1
        self._publish_seq = 0

    def _ensure(self) -> BlockingChannel:
        if self._conn is not None and self._conn.is_open and self._ch is not None and self._ch.is_open:
            return self._ch
        self._reset()
        retrying = Retrying(
            stop=stop_after_delay(self.config.reconnect_max_s),
            wait=wait_exponential_jitter(initial=0.1, max=2.0, jitter=0.1),
            retry=retry_if_exception(_reconnectable),
            reraise=True,
        )
        with self._guard("connect"):
            for attempt in retrying:
                with attempt:
                    self._connect_once()
        assert self._ch is not None
        return self._ch

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Translate pika failures into queue errors, dropping the connection so the next call reconnects."""
        try:
            yield
        except _AUTH as exc:
            self._reset()
            raise QueueConfigError(
                f"{what}: broker refused credentials for {self.config.redacted_url()}"
            ) from exc
        except pex.ChannelClosedByBroker as exc:
            self._reset()
            if exc.reply_code in (403, 404, 406):
                raise QueueConfigError(f"{what}: {exc.reply_code} {exc.reply_text}") from exc
            raise QueueUnavailable(
                f"{what}: channel closed by broker: {exc.reply_code} {exc.reply_text}"
            ) from exc
        except _LOST as exc:
            self._reset()
            raise QueueUnavailable(
                f"{what}: RabbitMQ at {self.config.redacted_url()} unavailable: {exc!r}"
            ) from exc

    def _on_confirm(self, frame: Any) -> None:
        batch = self._confirms
        if batch is None:
            return
        method = frame.method
        nack = isinstance(method, pika.spec.Basic.Nack)
        tags = (
            [t for t in batch.pending if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            message_id = batch.pending.pop(tag, None)
            if nack and message_id is not None:
                batch.nacked.append(message_id)
        if not batch.pending and self._conn is not None:
            self._conn.call_later(0, _noop)

    def _on_return(self, _channel: Any, method: Any, properties: pika.BasicProperties, _body: bytes) -> None:
        # A mandatory publish that no queue took: the broker still confirms it afterwards.
        if self._confirms is not None:
            self._confirms.returned.append(properties.message_id or "?")
            self._confirms.return_reasons.add(f"{method.reply_code} {method.reply_text}")

    # -------------------------------------------------------------------------------- publishing
    def _properties(
        self, m: Message, attempts: int, extra: Mapping[str, Any] | None = None
    ) -> pika.BasicProperties:
        return message_properties(m, attempts, extra)

    def _publish_and_wait(self, items: Sequence[tuple[str, str, bytes, pika.BasicProperties]]) -> None:
        ch = self._ensure()
        assert self._conn is not None
        impl = ch._impl
        batch = _ConfirmBatch()
        self._confirms = batch
        for exchange, routing_key, body, props in items:
            self._publish_seq += 1
            batch.pending[self._publish_seq] = props.message_id
            impl.basic_publish(
                exchange=exchange, routing_key=routing_key, body=body, properties=props, mandatory=True
            )
        _coalesce_output(impl)
        deadline = time.monotonic() + self.config.confirm_timeout_s
        while batch.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = list(batch.pending.values())
                # Late confirms could no longer be matched reliably: start over on a new connection.
                self._reset()
                raise QueueUnavailable(
                    f"no publisher confirm within {self.config.confirm_timeout_s}s for {len(missing)} message(s)",
                    message_ids=missing,
                )
            self._conn.process_data_events(time_limit=min(remaining, 0.5))
        self._confirms = None
        if batch.returned:
            raise PublishUnroutable(
                f"{len(batch.returned)} message(s) unroutable ({', '.join(sorted(batch.return_reasons))}): no queue "
                f"is bound to exchange {items[0][0]!r} with routing key {items[0][1]!r}",
                message_ids=batch.returned,
            )
        if batch.nacked:
            raise PublishNacked(f"broker nacked {len(batch.nacked)} message(s)", message_ids=batch.nacked)

    def _publish_confirmed(
        self,
        items: Sequence[tuple[str, str, bytes, pika.BasicProperties]],
        *,
        what: str,
        again_after_reconnect: bool,
    ) -> None:
        """Publish and wait for all confirms. New messages are sent again once after a reconnect (the
        first copy may have been stored too: duplicates are tolerated, losses are not)."""
        tries = 2 if again_after_reconnect else 1
        for attempt in range(tries):
            try:
                with self._guard(what):
                    self._publish_and_wait(items)
                return
            except QueueUnavailable:
                if attempt + 1 >= tries:
                    raise
                log.warning("%s: connection lost before all confirms; publishing the batch again", what)

    def publish_many(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        items = [(self.config.exchange, EVENT_KEY, m.body, self._properties(m, attempts=0)) for m in messages]
        self._publish_confirmed(items, what=f"publish of {len(items)} message(s)", again_after_reconnect=True)

    # --------------------------------------------------------------------------------- consuming
    def _on_message(self, _ch: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        self._buffer.append(
            _Raw(self._generation, method.delivery_tag, bool(method.redelivered), properties, body)
        )

    def _ensure_consumer(self) -> BlockingChannel:
        ch = self._ensure()
        if self._consumer_tag is None or self._consumer_tag not in ch.consumer_tags:
            ch.basic_qos(prefetch_count=self.config.prefetch)
            self._consumer_tag = ch.basic_consume(self.config.queue, self._on_message, auto_ack=False)
        return ch

    def _decode(self, raw: _Raw) -> Message:
        h = raw.properties.headers or {}
        attempts = _int(h.get("x-ia-attempts")) + _int(h.get("x-delivery-count")) + 1
        try:
            received_at = datetime.fromisoformat(_text(h.get("x-ia-received-at")))
            headers = json.loads(_text(h.get("x-ia-headers"), "{}"))
        except ValueError as exc:
            raise InvalidMessage(
                f"message {raw.properties.message_id!r} lacks valid x-ia-* headers: {exc}"
            ) from exc
        return Message(
            id=_text(raw.properties.message_id),
            source=_text(h.get("x-ia-source")),  # type: ignore[arg-type]  # validated by Message
            event_type=_text(raw.properties.type),
            body=raw.body,
            headers=headers if isinstance(headers, dict) else {},
            received_at=received_at,
            attempts=attempts,
        )

    def receive(
        self, max_messages: int = 100, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        """Take up to ``max_messages`` (at most ``prefetch`` are outstanding at a time).

        ``visibility_timeout_s`` does not apply: a delivery stays reserved for this connection until it is
        settled or the connection closes (then the broker requeues it at once), bounded by the broker's
        consumer timeout (30 min by default)."""
        del visibility_timeout_s
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._guard("receive"):
            self._ensure_consumer()
            assert self._conn is not None
            self._conn.process_data_events(0)
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._conn.process_data_events(time_limit=min(remaining, 0.25))
            # A batch arrives over a few milliseconds: keep collecting while it grows, so a drain gets
            # full micro-batches instead of the first message alone.
            while self._buffer and len(self._buffer) < max_messages:
                before = len(self._buffer)
                self._conn.process_data_events(time_limit=RECEIVE_LINGER_S)
                if len(self._buffer) == before:
                    break
        out: list[Delivery] = []
        while self._buffer and len(out) < max_messages:
            raw = self._buffer.popleft()
            if raw.generation != self._generation:
                continue
            receipt = _Receipt(raw.generation, raw.delivery_tag)
            try:
                message = self._decode(raw)
            except InvalidMessage as exc:
                self._dead_letter_raw(raw, f"unreadable queue message: {exc}", "malformed_message")
                continue
            delivery = Delivery(message, redelivered=raw.redelivered or message.attempts > 1, receipt=receipt)
            self._held[raw.delivery_tag] = message.received_at
            if message.attempts > self.max_attempts:
                delivered = message.attempts - 1
                self._dead_letter(
                    delivery,
                    f"delivered {delivered} time(s) without being settled (consumer crash loop?)",
                    "delivery_limit",
                    attempts=delivered,
                )
                continue
            out.append(delivery)
        return out

    def _fresh(self, delivery: Delivery, what: str) -> _Receipt:
        r = delivery.receipt
        if (
            not isinstance(r, _Receipt)
            or r.generation != self._generation
            or self._ch is None
            or not self._ch.is_open
        ):
            raise StaleDelivery(
                f"{what}: the connection that delivered {delivery.message.id=} is gone; it will be redelivered"
            )
        if r.delivery_tag not in self._held:
            # Settling twice would publish a second copy, then fail the channel on the unknown tag.
            raise StaleDelivery(f"{what}: {delivery.message.id=} was already settled")
        return r

    def _ack_tags(self, tags: Sequence[int], what: str) -> None:
        with self._guard(what):
            assert self._ch is not None
            # Queue every ack frame on the underlying channel, then flush once (what basic_ack does after
            # each frame: one send per message, seconds for a drain's batch). Not multiple=True: that would
            # also settle deliveries held for the next batch.
            impl = self._ch._impl
            for tag in tags:
                impl.basic_ack(delivery_tag=tag, multiple=False)
                self._held.pop(tag, None)
            _coalesce_output(impl)
            self._ch._flush_output()

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        tags: list[int] = []
        stale = 0
        for d in deliveries:
            try:
                tags.append(self._fresh(d, "ack").delivery_tag)
            except StaleDelivery:
                stale += 1
        if stale:
            log.info("ack: %d delivery(ies) already settled or from a lost connection; skipped", stale)
        tags = list(dict.fromkeys(tags))  # the same delivery twice in one call is acked once
        if tags:
            try:
                self._ack_tags(tags, f"ack of {len(tags)} message(s)")
            except QueueUnavailable as exc:
                log.warning("ack failed, the broker will redeliver (consumers deduplicate): %s", exc)

    def _republish_and_ack(
        self, pairs: Sequence[tuple[Delivery, tuple[str, str, bytes, pika.BasicProperties]]], what: str
    ) -> None:
        receipts = [self._fresh(d, what) for d, _ in pairs]
        # Confirm the copy before acking the original: a crash in between duplicates, never loses.
        self._publish_confirmed([item for _, item in pairs], what=what, again_after_reconnect=False)
        self._ack_tags([r.delivery_tag for r in receipts], what)

    def _tier_for(self, delay_s: float) -> int | None:
        if delay_s <= 0:
            return None
        wanted = int(delay_s * 1000)
        tiers = self.config.retry_tiers_ms
        return next((t for t in tiers if t >= wanted), tiers[-1])

    def _route_after(self, delay_s: float) -> tuple[str, str]:
        tier = self._tier_for(delay_s)
        if tier is None:
            return self.config.exchange, EVENT_KEY
        return self.config.retry_exchange, str(tier)

    def retry(self, delivery: Delivery, reason: str, delay_s: float | None = None) -> RetryOutcome:
        attempts = delivery.message.attempts
        if attempts >= self.max_attempts:
            self._dead_letter(delivery, f"gave up after {attempts} attempt(s): {reason}", "max_attempts")
            return "dead_lettered"
        if delay_s is None:
            delay_s = backoff_delay(
                attempts, base_s=self.config.backoff_base_s, cap_s=self.config.backoff_cap_s
            )
        exchange, key = self._route_after(delay_s)
        m = delivery.message
        props = self._properties(
            m, attempts=attempts, extra={"x-ia-last-error": truncate_reason(reason)[:500]}
        )
        self._republish_and_ack([(delivery, (exchange, key, m.body, props))], "retry")
        return "retried"

    def release(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Republish with the attempts not counting this delivery, then ack. Deliveries already settled or
        from a lost connection are skipped: the broker gives those back by itself."""
        fresh: dict[int, Delivery] = {}
        for d in deliveries:
            try:
                fresh.setdefault(self._fresh(d, "release").delivery_tag, d)
            except StaleDelivery:
                continue
        if not fresh:
            return
        exchange, key = self._route_after(delay_s)
        pairs = [
            (
                d,
                (
                    exchange,
                    key,
                    d.message.body,
                    self._properties(d.message, attempts=max(0, d.message.attempts - 1)),
                ),
            )
            for d in fresh.values()
        ]
        self._republish_and_ack(pairs, f"release of {len(pairs)} message(s)")

    def dead_letter(self, delivery: Delivery, reason: str, check_name: str) -> None:
        self._dead_letter(delivery, reason, check_name)

    def _dead_letter(
        self, delivery: Delivery, reason: str, check_name: str, *, attempts: int | None = None
    ) -> None:
        m = delivery.message
        props = self._properties(
            m,
            attempts=m.attempts if attempts is None else attempts,
            extra={
                "x-ia-dead-letter-reason": truncate_reason(reason),
                "x-ia-check-name": check_name,
                "x-ia-dead-lettered-at": datetime.now(UTC).isoformat(),
            },
        )
        self._republish_and_ack([(delivery, (self.config.dlx, DEAD_KEY, m.body, props))], "dead-letter")

    def _dead_letter_raw(self, raw: _Raw, reason: str, check_name: str) -> None:
        headers = {k: v for k, v in (raw.properties.headers or {}).items() if k not in _BROKER_HEADERS}
        headers.update({"x-ia-dead-letter-reason": truncate_reason(reason), "x-ia-check-name": check_name})
        props = replace_properties(
            raw.properties, headers=headers, delivery_mode=pika.DeliveryMode.Persistent
        )
        with self._guard("dead-letter"):
            self._publish_and_wait([(self.config.dlx, DEAD_KEY, raw.body, props)])
        self._ack_tags([raw.delivery_tag], "dead-letter")

    # ------------------------------------------------------------------------------ dead letters
    def _dead_letter_item(self, props: pika.BasicProperties, body: bytes) -> EventDeadLetter:
        h = props.headers or {}
        deaths = [d for d in (h.get("x-death") or []) if isinstance(d, dict)]
        source = _text(h.get("x-ia-source"), "unknown")
        message_id = _text(props.message_id) or f"amqp:{hashlib.sha256(body).hexdigest()[:32]}"
        try:
            received_at: datetime | None = datetime.fromisoformat(_text(h.get("x-ia-received-at")))
        except ValueError:
            received_at = None
        try:
            headers = json.loads(_text(h.get("x-ia-headers"), "{}"))
        except ValueError:
            headers = {}
        prior = _int(h.get("x-ia-attempts"))
        reason = h.get("x-ia-dead-letter-reason")
        if reason is not None:
            check_name = _text(h.get("x-ia-check-name"), "dead_letter")
            attempts = max(1, prior)
            reason_text = _text(reason)
        else:
            why = _text(
                h.get("x-first-death-reason") or (deaths[-1].get("reason") if deaths else None), "unknown"
            )
            deliveries = self.config.delivery_limit + 1
            attempts = prior + deliveries if why == "delivery_limit" else max(1, prior)
            check_name = (
                why if why in ("delivery_limit", "rejected", "expired", "maxlen") else "broker_dead_letter"
            )
            reason_text = {
                "delivery_limit": (
                    f"RabbitMQ dead-lettered the message after {deliveries} deliveries without ack "
                    f"(x-delivery-limit={self.config.delivery_limit}); consumer crash loop?"
                ),
                "rejected": "rejected by a consumer without requeue",
                "expired": "expired in the queue (message TTL)",
                "maxlen": "dropped from a full queue (x-max-length)",
            }.get(why, f"dead-lettered by the broker ({why})")
        details = {
            "backend": "rabbitmq",
            "queue": self.config.queue,
            "x_death": [
                {k: _text(d.get(k)) for k in ("reason", "queue", "count", "exchange", "time") if k in d}
                for d in deaths
            ],
        }
        return EventDeadLetter(
            source=source if source in SOURCES else "unknown",
            message_id=message_id,
            event_type=_text(props.type, "unknown") or "unknown",
            body=body,
            headers=headers if isinstance(headers, dict) else {},
            received_at=received_at,
            reason=reason_text,
            check_name=check_name,
            attempts=attempts,
            details=details,
        )

    def drain_dead_letters(self, max_messages: int = 1000) -> int:
        """Move up to ``max_messages`` from the DLQ into the warehouse ``dead_letters`` table, in batches;
        each batch is acked only after its transaction committed (a crash in between writes the same
        dead letters again, which updates their rows)."""
        engine = get_engine(self.warehouse_url)
        moved = 0
        with self._guard("drain dead letters"):
            self._ensure()
            assert self._conn is not None
            dl = self._conn.channel()  # own channel: multiple-acks here must not touch main-queue deliveries
            try:
                while moved < max_messages:
                    batch: list[tuple[int, EventDeadLetter]] = []
                    while len(batch) < min(200, max_messages - moved):
                        method, props, body = dl.basic_get(self.config.dlq, auto_ack=False)
                        if method is None:
                            break
                        batch.append((method.delivery_tag, self._dead_letter_item(props, body)))
                    if not batch:
                        break
                    try:
                        with engine.begin() as conn:
                            write_dead_letters(conn, [item for _, item in batch])
                    except sa.exc.SQLAlchemyError as exc:
                        dl.basic_nack(batch[-1][0], multiple=True, requeue=True)
                        raise classify_db_error(exc, "drain dead letters into the warehouse") from exc
                    dl.basic_ack(batch[-1][0], multiple=True)
                    moved += len(batch)
            finally:
                if dl.is_open:
                    dl.close()
        if moved:
            log.warning("moved %d dead-lettered event(s) from %s into dead_letters", moved, self.config.dlq)
        return moved

    # ----------------------------------------------------------------------------- observability
    def _ready(self, queue: str) -> int:
        assert self._ch is not None
        return int(self._ch.queue_declare(queue, passive=True).method.message_count)

    def depth(self) -> int:
        """Ready messages in the main queue and the retry tiers, plus those this instance holds. Messages
        reserved by other consumers are not visible to AMQP (the management API would show them)."""
        with self._guard("depth"):
            self._ensure()
            ready = self._ready(self.config.queue)
            ready += sum(self._ready(self.config.retry_queue(ms)) for ms in self.config.retry_tiers_ms)
        return ready + len(self._buffer) + len(self._held)

    def dead_letter_depth(self) -> int:
        """Messages waiting in the DLQ to be moved into the warehouse (alert when this stays above 0)."""
        with self._guard("dead-letter depth"):
            self._ensure()
            return self._ready(self.config.dlq)

    def oldest_age_seconds(self) -> float | None:
        """Age of the oldest message this instance holds (prefetched or handed out: the queue's head while
        consuming); 0.0 when the queue is empty; None when messages wait but none is held here (AMQP has
        no way to peek without counting a delivery)."""
        held = [r.properties.headers.get("x-ia-received-at") for r in self._buffer if r.properties.headers]
        times = list(self._held.values())
        for value in held:
            try:
                times.append(datetime.fromisoformat(_text(value)))
            except ValueError:
                continue
        if times:
            return max(0.0, (datetime.now(UTC) - min(times)).total_seconds())
        return 0.0 if self.depth() == 0 else None

    def keepalive(self) -> None:
        """Answer heartbeats while idle; a dead connection is dropped here and re-made by the next call."""
        if self._conn is None or not self._conn.is_open:
            return
        try:
            self._conn.process_data_events(0)
        except _LOST as exc:
            log.info("connection to %s lost while idle: %r", self.config.redacted_url(), exc)
            self._reset()

    def close(self) -> None:
        self._reset()

    def delete_topology(self) -> None:
        """Delete this prefix's queues and exchanges (messages included). For tests and teardown; it does
        not declare anything first, so it works whatever arguments the queues were declared with."""
        self._reset()
        with self._guard("delete topology"):
            conn = BlockingConnection(self._params)
            try:
                ch = conn.channel()
                for q in [
                    self.config.queue,
                    self.config.dlq,
                    *(self.config.retry_queue(ms) for ms in self.config.retry_tiers_ms),
                ]:
                    ch.queue_delete(q)
                for ex in (self.config.exchange, self.config.dlx, self.config.retry_exchange):
                    ch.exchange_delete(ex)
            finally:
                if conn.is_open:
                    conn.close()


def replace_properties(props: pika.BasicProperties, **changes: Any) -> pika.BasicProperties:
    """A copy of AMQP properties with some fields changed."""
    fields = {
        name: getattr(props, name)
        for name in (
            "content_type",
            "content_encoding",
            "headers",
            "delivery_mode",
            "priority",
            "correlation_id",
            "reply_to",
            "expiration",
            "message_id",
            "timestamp",
            "type",
            "user_id",
            "app_id",
            "cluster_id",
        )
    }
    fields.update(changes)
    return pika.BasicProperties(**fields)
