"""The consumer's connection to RabbitMQ and the publisher beside it: connect, reconnect, translate failures.

The consumer uses a ``BlockingConnection`` (deliveries belong to it: its loss requeues them at once); the
publisher (``ConfirmingPublisher``) has a connection of its own. Every call reconnects (capped exponential
backoff with jitter, within ``reconnect_max_s``) if its connection was lost, else raises ``QueueUnavailable``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from integration_assets.queue.base import DeadLetterSink, QueueConfigError, QueueUnavailable
from integration_assets.queue.rabbitmq.publisher import ConfirmingPublisher, Outgoing
from integration_assets.queue.rabbitmq.topology import RabbitMQConfig, declare_topology, delete_topology

log = logging.getLogger(__name__)

# Failures of the connection or channel that a new connection can cure.
_LOST = (pex.AMQPConnectionError, pex.ChannelWrongStateError, pex.ChannelClosed, OSError)
_AUTH = (pex.AuthenticationError, pex.ProbableAuthenticationError, pex.ProbableAccessDeniedError)


def _reconnectable(exc: BaseException) -> bool:
    """Worth another connection attempt: not refused credentials, not a topology the broker rejected."""
    return isinstance(exc, _LOST) and not isinstance(exc, _AUTH + (pex.ChannelClosedByBroker,))


@dataclass(frozen=True, slots=True)
class RawDelivery:
    generation: int
    delivery_tag: int
    redelivered: bool
    properties: pika.BasicProperties
    body: bytes


class BrokerLink:
    """The connections and delivery state of a ``RabbitMQQueue``: made lazily, dropped on failure (the
    broker then requeues what the consumer held), made again on next use."""

    def __init__(
        self,
        url: str,
        *,
        warehouse_url: str | None = None,
        config: RabbitMQConfig | None = None,
        dead_letter_sink: DeadLetterSink | None = None,
    ) -> None:
        self.config = config or RabbitMQConfig.from_url(url)
        self.name = self.config.queue
        self.max_attempts = self.config.max_attempts
        self.warehouse_url = warehouse_url
        self.dead_letter_sink = dead_letter_sink
        try:
            self._params = pika.URLParameters(self.config.url)
        except ValueError as exc:
            raise QueueConfigError(f"bad AMQP URL {self.config.redacted_url()}: {exc}") from exc
        # We retry connections ourselves (tenacity); pika's own attempts would multiply the wait.
        self._params.connection_attempts = 1
        if "blocked_connection_timeout" not in self.config.url:
            # A broker in a memory/disk alarm blocks publishers; give up on that connection after a minute.
            self._params.blocked_connection_timeout = 60.0
        self._publisher = ConfirmingPublisher(self._params, self.config)
        self._conn: BlockingConnection | None = None
        self._ch: BlockingChannel | None = None
        self._generation = 0
        self._consumer_tag: str | None = None
        self._buffer: deque[RawDelivery] = deque()
        self._held: dict[int, datetime] = {}  # delivery tag -> received_at, handed out and not settled
        self._unsent: set[int] = (
            set()
        )  # settled by the caller, ack frame not sent yet (see consumer._ack_tags)

    def __repr__(self) -> str:
        return f"RabbitMQQueue({self.config.redacted_url()}, prefix={self.config.prefix!r})"

    # ------------------------------------------------------------------------------ connection
    def _reset(self, *, consumer: bool = True, publisher: bool = True) -> None:
        """Forget the connections; everything the consumer's had delivered is requeued by the broker."""
        if publisher:
            self._publisher.close()
        if not consumer:
            return
        conn, self._conn, self._ch = self._conn, None, None
        self._consumer_tag = None
        self._buffer.clear()
        self._held.clear()
        self._unsent.clear()
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
        except BaseException:
            if conn.is_open:
                conn.close()
            raise
        self._conn, self._ch = conn, ch
        self._generation += 1

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_delay(self.config.reconnect_max_s),
            wait=wait_exponential_jitter(initial=0.1, max=2.0, jitter=0.1),
            retry=retry_if_exception(_reconnectable),
            reraise=True,
        )

    def _ensure(self) -> BlockingChannel:
        if self._conn is not None and self._conn.is_open and self._ch is not None and self._ch.is_open:
            return self._ch
        self._reset(publisher=False)
        with self._guard("connect"):
            for attempt in self._retrying():
                with attempt:
                    self._connect_once()
        assert self._ch is not None
        return self._ch

    def _ensure_publisher(self, what: str, *, consumer: bool) -> ConfirmingPublisher:
        if not self._publisher.is_open:
            with self._guard(f"{what}: connect", consumer=consumer):
                for attempt in self._retrying():
                    with attempt:
                        self._publisher.connect()
        return self._publisher

    @contextmanager
    def _guard(self, what: str, *, consumer: bool = True) -> Iterator[None]:
        """Translate pika failures into queue errors, dropping the connection(s) so the next call reconnects
        (``consumer=False``: only the publisher's, so the deliveries held here stay held)."""
        try:
            yield
        except _AUTH as exc:
            self._reset(consumer=consumer)
            raise QueueConfigError(
                f"{what}: broker refused credentials for {self.config.redacted_url()}"
            ) from exc
        except pex.ChannelClosedByBroker as exc:
            self._reset(consumer=consumer)
            if exc.reply_code in (403, 404, 406):
                raise QueueConfigError(f"{what}: {exc.reply_code} {exc.reply_text}") from exc
            raise QueueUnavailable(
                f"{what}: channel closed by broker: {exc.reply_code} {exc.reply_text}"
            ) from exc
        except _LOST as exc:
            self._reset(consumer=consumer)
            raise QueueUnavailable(
                f"{what}: RabbitMQ at {self.config.redacted_url()} unavailable: {exc!r}"
            ) from exc
        except QueueUnavailable:
            self._reset(consumer=consumer)
            raise

    # -------------------------------------------------------------------------------- publishing
    def _publish_confirmed(
        self, items: Sequence[Outgoing], *, what: str, again_after_reconnect: bool, consumer: bool = True
    ) -> None:
        """Publish and wait for all confirms. New messages are sent again once after a reconnect (the
        first copy may have been stored too: duplicates are tolerated, losses are not)."""
        tries = 2 if again_after_reconnect else 1
        for attempt in range(tries):
            try:
                publisher = self._ensure_publisher(what, consumer=consumer)
                with self._guard(what, consumer=consumer):
                    publisher.publish(items)
                return
            except QueueUnavailable:
                if attempt + 1 >= tries:
                    raise
                log.warning("%s: connection lost before all confirms; publishing the batch again", what)

    def keepalive(self) -> None:
        """Answer heartbeats while idle; a dead connection is dropped here and re-made by the next call
        (the publisher's alone, when only it died: the deliveries held here stay held)."""
        try:
            self._publisher.service()
        except _LOST as exc:
            log.info("publisher connection to %s lost while idle: %r", self.config.redacted_url(), exc)
            self._reset(consumer=False)
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
                delete_topology(conn.channel(), self.config)
            finally:
                if conn.is_open:
                    conn.close()
