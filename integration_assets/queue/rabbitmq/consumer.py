"""The event queue on RabbitMQ: a consumer on a ``BlockingConnection``, a ``ConfirmingPublisher`` beside it.

Retry with delay is republish-then-ack: ``retry`` publishes a copy (confirmed, mandatory) to the retry tier
at or above the wanted delay, carrying the attempts used so far in ``x-ia-attempts``, then acks the original.
When the TTL expires the broker dead-letters the copy back to the main queue. A crash between the confirm and
the ack leaves two copies: consumers deduplicate on the message id anyway. Crash loops are stopped by the
broker's delivery limit (dead-lettered with reason ``delivery_limit``); anything beyond ``max_attempts`` that
still arrives is dead-lettered by ``receive``.

Dead letters: ``dead_letter`` publishes a copy to the DLX carrying the reason and check name in headers,
then acks the original; the broker sends delivery-limit casualties there too. ``drain_dead_letters`` hands
the DLQ to the queue's ``DeadLetterSink`` in the warehouse and acks only after the commit, so review and
replay happen in one place whatever the backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
import sqlalchemy as sa
from pika.adapters.blocking_connection import BlockingChannel

from integration_assets.queue.base import (
    Delivery,
    InvalidMessage,
    Message,
    Queue,
    QueueConfigError,
    QueueUnavailable,
    RetryOutcome,
    StaleDelivery,
    backoff_delay,
    truncate_reason,
)
from integration_assets.queue.rabbitmq import codec
from integration_assets.queue.rabbitmq.connection import BrokerLink, RawDelivery
from integration_assets.queue.rabbitmq.publisher import Outgoing
from integration_assets.queue.rabbitmq.topology import DEAD_KEY, EVENT_KEY
from integration_assets.queue.sql import as_queue_error
from integration_assets.warehouse.db import get_engine

log = logging.getLogger(__name__)

# How long receive() waits for more of a batch once messages arrive (prefetched deliveries come in bursts).
RECEIVE_LINGER_S = 0.005
# receive_batch: how long to top a batch up after the first deliveries arrived (they come in network reads),
# and how long to wait for a first delivery before calling the queue empty (a consumer's first deliveries,
# or those following an ack, take a round trip to arrive).
BATCH_LINGER_S = 0.05
BATCH_FIRST_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class _Receipt:
    generation: int  # connection generation: tags of an older connection cannot be settled
    delivery_tag: int


class RabbitMQQueue(BrokerLink, Queue):
    """The event queue on RabbitMQ (see the module docstring)."""

    backend = "rabbitmq"

    def publish_many(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        items = [
            (self.config.exchange, EVENT_KEY, m.body, codec.message_properties(m, attempts=0))
            for m in messages
        ]
        self._publish_confirmed(
            items, what=f"publish of {len(items)} message(s)", again_after_reconnect=True, consumer=False
        )

    # --------------------------------------------------------------------------------- consuming
    def _on_message(self, _ch: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        self._buffer.append(
            RawDelivery(self._generation, method.delivery_tag, bool(method.redelivered), properties, body)
        )

    def _ensure_consumer(self) -> BlockingChannel:
        ch = self._ensure()
        if self._consumer_tag is None or self._consumer_tag not in ch.consumer_tags:
            ch.basic_qos(prefetch_count=self.config.prefetch)
            self._consumer_tag = ch.basic_consume(self.config.queue, self._on_message, auto_ack=False)
        return ch

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
                message = codec.decode(raw.properties, raw.body)
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

    def receive_batch(
        self, max_messages: int, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        """Deliveries are pushed over the network, so an empty buffer right after subscribing or acking does
        not mean an empty queue: wait a little for the first one, then top the batch up for a few ms."""
        got = self.receive(max_messages, visibility_timeout_s, wait_s=max(wait_s, BATCH_FIRST_WAIT_S))
        if not got or len(got) >= max_messages:
            return got
        deadline = time.monotonic() + BATCH_LINGER_S
        while len(got) < max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got += self.receive(max_messages - len(got), visibility_timeout_s, wait_s=min(0.01, left))
        return got

    # --------------------------------------------------------------------------------- settling
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
        """Settle ``tags`` with as few frames as possible. ``BlockingChannel.basic_ack`` sends and flushes each
        frame at once (thousands of round trips through the I/O loop for a batch), so acks go out as one
        ``multiple`` ack for the longest run of settled tags that leaves no unsettled delivery of this channel
        behind it (deliveries held for the next batch stay unsettled). Tags above an unsettled one wait in
        ``_unsent`` until it is settled too (usually the batch's rejections, dead-lettered right after the
        ack) or the queue is closed; a connection lost meanwhile redelivers them, which consumers tolerate."""
        settled = self._unsent | set(tags)
        outstanding = sorted(
            {
                *settled,
                *self._held,
                *(r.delivery_tag for r in self._buffer if r.generation == self._generation),
            }
        )
        upto = None
        for tag in outstanding:
            if tag not in settled:
                break
            upto = tag
        for tag in tags:
            self._held.pop(tag, None)
        if upto is None:
            self._unsent = settled
            return
        with self._guard(what):
            assert self._ch is not None
            self._ch.basic_ack(delivery_tag=upto, multiple=True)
        self._unsent = {t for t in settled if t > upto}

    def _send_unsent(self) -> None:
        """Ack what is still waiting behind an unsettled delivery, one frame each (closing: no more waiting)."""
        if not self._unsent or self._ch is None or not self._ch.is_open:
            return
        try:
            with self._guard(f"ack of {len(self._unsent)} message(s)"):
                for tag in sorted(self._unsent):
                    self._ch.basic_ack(delivery_tag=tag, multiple=False)
            self._unsent.clear()
        except QueueUnavailable as exc:
            log.warning("ack failed, the broker will redeliver (consumers deduplicate): %s", exc)

    def ack(self, deliveries: Sequence[Delivery], *, connection: sa.Connection | None = None) -> None:
        if connection is not None:
            raise QueueConfigError("RabbitMQ cannot ack inside a database transaction: ack after the commit")
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

    def close(self) -> None:
        self._send_unsent()
        self._reset()

    def _republish_and_ack(self, pairs: Sequence[tuple[Delivery, Outgoing]], what: str) -> None:
        receipts = [self._fresh(d, what) for d, _ in pairs]
        # Confirm the copy before acking the original: a crash in between duplicates, never loses.
        self._publish_confirmed([item for _, item in pairs], what=what, again_after_reconnect=False)
        self._ack_tags([r.delivery_tag for r in receipts], what)

    def _route_after(self, delay_s: float) -> tuple[str, str]:
        if delay_s <= 0:
            return self.config.exchange, EVENT_KEY
        wanted = int(delay_s * 1000)
        tiers = self.config.retry_tiers_ms
        return self.config.retry_exchange, str(next((t for t in tiers if t >= wanted), tiers[-1]))

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
        props = codec.message_properties(
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
                    codec.message_properties(d.message, attempts=max(0, d.message.attempts - 1)),
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
        props = codec.message_properties(
            m,
            attempts=m.attempts if attempts is None else attempts,
            extra={
                "x-ia-dead-letter-reason": truncate_reason(reason),
                "x-ia-check-name": check_name,
                "x-ia-dead-lettered-at": datetime.now(UTC).isoformat(),
            },
        )
        self._republish_and_ack([(delivery, (self.config.dlx, DEAD_KEY, m.body, props))], "dead-letter")

    def _dead_letter_raw(self, raw: RawDelivery, reason: str, check_name: str) -> None:
        props = codec.dead_letter_properties(raw.properties, truncate_reason(reason), check_name)
        self._publish_confirmed(
            [(self.config.dlx, DEAD_KEY, raw.body, props)], what="dead-letter", again_after_reconnect=False
        )
        self._ack_tags([raw.delivery_tag], "dead-letter")

    # ------------------------------------------------------------------------------ dead letters
    def drain_dead_letters(self, max_messages: int = 1000) -> int:
        """Hand up to ``max_messages`` from the DLQ to the dead-letter sink, in batches; each batch is acked
        only after its warehouse transaction committed (a crash in between records the same dead letters
        again, which updates their rows)."""
        engine = get_engine(self.warehouse_url)
        moved = 0
        with self._guard("drain dead letters"):
            self._ensure()
            assert self._conn is not None
            dl = self._conn.channel()  # own channel: multiple-acks here must not touch main-queue deliveries
            try:
                while moved < max_messages:
                    batch: list[tuple[int, Any]] = []
                    while len(batch) < min(200, max_messages - moved):
                        method, props, body = dl.basic_get(self.config.dlq, auto_ack=False)
                        if method is None:
                            break
                        item = codec.dead_letter_item(
                            props, body, queue=self.config.queue, delivery_limit=self.config.delivery_limit
                        )
                        batch.append((method.delivery_tag, item))
                    if not batch:
                        break
                    try:
                        with engine.begin() as conn:
                            self.record_dead_letters(conn, [item for _, item in batch])
                    except sa.exc.SQLAlchemyError as exc:
                        dl.basic_nack(batch[-1][0], multiple=True, requeue=True)
                        raise as_queue_error(exc, "drain dead letters into the warehouse") from exc
                    except BaseException:
                        dl.basic_nack(batch[-1][0], multiple=True, requeue=True)
                        raise
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
        times = list(self._held.values())
        times += [t for r in self._buffer if (t := codec.received_at(r.properties)) is not None]
        if times:
            return max(0.0, (datetime.now(UTC) - min(times)).total_seconds())
        return 0.0 if self.depth() == 0 else None
