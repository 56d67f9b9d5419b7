"""The embedded queue: a table in the warehouse database (SQLite by default, or Postgres).

Claiming is one conditional ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING …`` that sets a claim
token, bumps ``attempts`` and pushes ``visible_at_ms`` to now + visibility timeout:

- Postgres: the inner SELECT is ``FOR UPDATE SKIP LOCKED``, so concurrent consumers claim disjoint rows
  without waiting on each other.
- SQLite: a write statement takes the database write lock before it reads, so the select-and-update is
  atomic; concurrent claimers queue on the lock (busy timeout) instead of double-claiming.

Settling (retry, release, dead-letter) is conditional on the claim token, so a consumer whose visibility
timeout expired cannot undo the work of the consumer that took the message over. ``ack`` deletes by row
id whatever the token: once the effect is committed, the message is done.

Publishing deduplicates on the key (``queue.sql_publish``): identical re-deliveries of a pending event are
stored once and counted in ``Queue.last_publish``; other content under a taken key is dead-lettered.

Dead letters are recorded by the queue's ``DeadLetterSink`` (the ``dead_letters`` table's writer) in the same
transaction that deletes the queue row: an event is always in exactly one of the two places.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect

from integration_assets.queue.base import (
    DeadLetterSink,
    Delivery,
    Message,
    PublishOutcome,
    Queue,
    QueueConfigError,
    QueueDeadLetter,
    QueueUnavailable,
    RetryOutcome,
    StaleDelivery,
    TerminalQueueError,
    backoff_delay,
    truncate_reason,
)
from integration_assets.queue.sql_publish import insert_messages
from integration_assets.warehouse.db import get_engine, is_postgres
from integration_assets.warehouse.schema import event_queue

log = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "events"
DEFAULT_MAX_ATTEMPTS = 5
# How often receive(wait_s=…) polls an empty table. Short enough for interactive use, long enough not
# to matter to the database.
POLL_INTERVAL_S = 0.05


# ----------------------------------------------------------------------------------------- errors
def as_queue_error(exc: sa.exc.SQLAlchemyError, what: str) -> Exception:
    """The queue error an SQLAlchemy error of the queue's database means (missing table, outage, other)."""
    text = str(getattr(exc, "orig", exc)).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return QueueConfigError(
            f"{what}: queue table missing; run `integration-assets db upgrade` ({exc.__class__.__name__})"
        )
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError) or getattr(
        exc, "connection_invalidated", False
    ):
        return QueueUnavailable(f"{what}: database unavailable ({exc.__class__.__name__}: {text[:200]})")
    return TerminalQueueError(f"{what}: {exc.__class__.__name__}: {text[:200]}")


@dataclass(frozen=True, slots=True)
class _Receipt:
    row_id: int
    claim_token: str


# ------------------------------------------------------------------------------------------ queue
class SqlQueue(Queue):
    """Queue on the ``event_queue`` table of the warehouse at ``url`` (default: the configured one)."""

    backend = "sql"

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = DEFAULT_QUEUE_NAME,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base_s: float = 2.0,
        backoff_cap_s: float = 600.0,
        dead_letter_sink: DeadLetterSink | None = None,
    ) -> None:
        if max_attempts < 1:
            raise QueueConfigError(f"max_attempts must be >= 1, got {max_attempts}")
        if not name or len(name) > 64:
            raise QueueConfigError(f"queue name must be 1..64 characters: {name=!r}")
        self.engine = get_engine(url)
        self.name = name
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.dead_letter_sink = dead_letter_sink
        self._pg = is_postgres(self.engine)
        self.concurrent_writers = self._pg

    def __repr__(self) -> str:
        return f"SqlQueue(name={self.name!r}, dialect={self.engine.dialect.name}, max_attempts={self.max_attempts})"

    # -- plumbing
    def _now(self) -> sa.ColumnElement[int]:
        """Now in epoch ms: the database's clock on Postgres (consumers' clocks may be skewed), the local
        clock on SQLite (the database is a local file, so it is the same clock)."""
        if self._pg:
            return sa.cast(sa.func.floor(sa.extract("epoch", sa.func.now()) * 1000), sa.BigInteger)
        return sa.literal(int(time.time() * 1000), sa.BigInteger)

    @contextmanager
    def _tx(self, what: str) -> Iterator[sa.Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise as_queue_error(exc, f"{what} on queue {self.name!r}") from exc

    @staticmethod
    def _to_message(row: Any) -> Message:
        return Message(
            id=row.message_id,
            source=row.source,
            event_type=row.event_type,
            body=bytes(row.body),
            headers=json.loads(row.headers),
            received_at=datetime.fromtimestamp(row.received_at_ms / 1000, tz=UTC),
            attempts=row.attempts,
        )

    def _delete_and_dead_letter(
        self, conn: sa.Connection, items: Sequence[tuple[_Receipt, QueueDeadLetter]]
    ) -> int:
        """Delete claimed rows and record their dead letters in ``conn``'s transaction; returns rows deleted
        (the dead letters are recorded only for rows this claim still owned)."""
        owned: list[QueueDeadLetter] = []
        for receipt, item in items:
            deleted = conn.execute(
                sa.delete(event_queue).where(
                    event_queue.c.id == receipt.row_id, event_queue.c.claim_token == receipt.claim_token
                )
            ).rowcount
            if deleted:
                owned.append(item)
        self.record_dead_letters(conn, owned)
        return len(owned)

    # -- producer
    def publish_many(self, messages: Sequence[Message]) -> None:
        """Insert ``messages`` in one transaction; returns after COMMIT.

        A message whose key is already queued (pending, claimed or in backoff) is not stored twice: with the
        same content (``queue.keys``) it is a duplicate, counted in ``last_publish``; with other content it
        is a key collision, dead-lettered (check ``key_collision``) in the same transaction, and counted."""
        self.last_publish = PublishOutcome()
        if not messages:
            return
        with self._tx(f"publish of {len(dict.fromkeys(m.id for m in messages))} message(s)") as conn:
            duplicates, collided = insert_messages(conn, self.name, messages)
            self.record_dead_letters(conn, collided)
        self.last_publish = PublishOutcome(tuple(duplicates), tuple(c.source for c in collided))
        if collided:
            log.warning("queue %r: %d key collision(s) dead-lettered at publish", self.name, len(collided))

    # -- consumer
    def receive(
        self, max_messages: int = 100, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        if max_messages < 1:
            return []
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            deliveries = self._claim(max_messages, visibility_timeout_s)
            if deliveries or time.monotonic() >= deadline:
                return deliveries
            time.sleep(min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))

    def _claim(self, max_messages: int, visibility_timeout_s: float) -> list[Delivery]:
        token = uuid.uuid4().hex
        now = self._now()
        candidates = (
            sa.select(event_queue.c.id)
            .where(event_queue.c.queue_name == self.name, event_queue.c.visible_at_ms <= now)
            .order_by(event_queue.c.visible_at_ms, event_queue.c.id)
            .limit(max_messages)
        )
        if self._pg:
            candidates = candidates.with_for_update(skip_locked=True)
        claim = (
            sa.update(event_queue)
            .where(event_queue.c.id.in_(candidates.scalar_subquery()))
            .values(
                claim_token=token,
                attempts=event_queue.c.attempts + 1,
                visible_at_ms=now + int(visibility_timeout_s * 1000),
            )
            .returning(
                event_queue.c.id,
                event_queue.c.message_id,
                event_queue.c.source,
                event_queue.c.event_type,
                event_queue.c.body,
                event_queue.c.headers,
                event_queue.c.received_at_ms,
                event_queue.c.attempts,
                event_queue.c.last_error,
            )
        )
        deliveries: list[Delivery] = []
        exhausted: list[tuple[_Receipt, QueueDeadLetter]] = []
        with self._tx("receive") as conn:
            for row in sorted(conn.execute(claim).all(), key=lambda r: r.id):
                receipt = _Receipt(row.id, token)
                message = self._to_message(row)
                if row.attempts > self.max_attempts:
                    # Claimed max_attempts times and never settled: its consumer keeps dying on it (the
                    # SQL counterpart of RabbitMQ's x-delivery-limit). Do not hand it out again.
                    delivered = row.attempts - 1
                    reason = (
                        f"delivered {delivered} time(s) without being acked, retried or dead-lettered "
                        f"(visibility timeout expired each time; consumer crash loop?)"
                    )
                    if row.last_error:
                        reason += f"; last error: {row.last_error}"
                    exhausted.append(
                        (
                            receipt,
                            QueueDeadLetter.of(
                                message,
                                reason,
                                "delivery_limit",
                                delivered,
                                {"queue": self.name, "backend": "sql"},
                            ),
                        )
                    )
                else:
                    deliveries.append(Delivery(message, redelivered=row.attempts > 1, receipt=receipt))
            if exhausted:
                self._delete_and_dead_letter(conn, exhausted)
                log.warning(
                    "dead-lettered %d message(s) of queue %r at the delivery limit", len(exhausted), self.name
                )
        return deliveries

    def supports_transactional_ack(self, engine: sa.Engine) -> bool:
        return self.engine is engine or self.engine.url.render_as_string(
            hide_password=False
        ) == engine.url.render_as_string(hide_password=False)

    def concurrent_receiver(self) -> SqlQueue | None:
        """On Postgres, a second handle (its own database session) so another thread can claim the next
        batch while this one is written; SQLite takes one writer at a time."""
        if not self._pg:
            return None
        return SqlQueue(
            self.engine.url.render_as_string(hide_password=False),
            name=self.name,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_cap_s=self.backoff_cap_s,
            dead_letter_sink=self.dead_letter_sink,
        )

    def ack(self, deliveries: Sequence[Delivery], *, connection: sa.Connection | None = None) -> None:
        """Delete the messages. With ``connection``, the delete joins that transaction, so the consumer can
        commit its effect, its event-id ledger row and the ack atomically (exactly once on this backend)."""
        if connection is not None and not self.supports_transactional_ack(connection.engine):
            raise QueueConfigError(f"{self!r} cannot ack inside a transaction on another database")
        ids = [self._receipt(d).row_id for d in deliveries]
        if not ids:
            return
        if self._pg:
            # One array parameter: an IN list of thousands of placeholders costs more to build than to run.
            ids_param = sa.bindparam("ids", ids, type_=pg_dialect.ARRAY(sa.BigInteger))
            stmt = sa.delete(event_queue).where(event_queue.c.id == sa.any_(ids_param))
        else:
            stmt = sa.delete(event_queue).where(event_queue.c.id.in_(ids))
        if connection is not None:
            connection.execute(stmt)
            return
        with self._tx(f"ack of {len(ids)} message(s)") as conn:
            conn.execute(stmt)

    def retry(self, delivery: Delivery, reason: str, delay_s: float | None = None) -> RetryOutcome:
        attempts = delivery.message.attempts
        if attempts >= self.max_attempts:
            self._dead_letter(delivery, f"gave up after {attempts} attempt(s): {reason}", "max_attempts")
            return "dead_lettered"
        if delay_s is None:
            delay_s = backoff_delay(attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
        receipt = self._receipt(delivery)
        with self._tx("retry") as conn:
            updated = conn.execute(
                sa.update(event_queue)
                .where(event_queue.c.id == receipt.row_id, event_queue.c.claim_token == receipt.claim_token)
                .values(
                    claim_token=None,
                    visible_at_ms=self._now() + int(max(0.0, delay_s) * 1000),
                    last_error=truncate_reason(reason),
                )
            ).rowcount
        if not updated:
            raise StaleDelivery(f"retry: claim on {delivery.message.id=} expired and was taken over")
        return "retried"

    def release(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        if not deliveries:
            return
        with self._tx(f"release of {len(deliveries)} message(s)") as conn:
            for d in deliveries:
                receipt = self._receipt(d)
                conn.execute(
                    sa.update(event_queue)
                    .where(
                        event_queue.c.id == receipt.row_id, event_queue.c.claim_token == receipt.claim_token
                    )
                    .values(
                        claim_token=None,
                        attempts=sa.case((event_queue.c.attempts > 0, event_queue.c.attempts - 1), else_=0),
                        visible_at_ms=self._now() + int(max(0.0, delay_s) * 1000),
                    )
                )

    def dead_letter(self, delivery: Delivery, reason: str, check_name: str) -> None:
        self._dead_letter(delivery, reason, check_name)

    def _dead_letter(self, delivery: Delivery, reason: str, check_name: str) -> None:
        receipt = self._receipt(delivery)
        item = QueueDeadLetter.of(
            delivery.message,
            reason,
            check_name,
            delivery.message.attempts,
            {"queue": self.name, "backend": "sql"},
        )
        with self._tx("dead-letter") as conn:
            if not self._delete_and_dead_letter(conn, [(receipt, item)]):
                # Nothing was written: the row is no longer ours (its new owner will settle it).
                raise StaleDelivery(
                    f"dead_letter: claim on {delivery.message.id=} expired and was taken over"
                )

    # -- observability
    def depth(self) -> int:
        with self._tx("depth") as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(event_queue)
                    .where(event_queue.c.queue_name == self.name)
                ).scalar_one()
            )

    def oldest_age_seconds(self) -> float | None:
        with self._tx("oldest age") as conn:
            row = conn.execute(
                sa.select(
                    self._now().label("now"), sa.func.min(event_queue.c.enqueued_at_ms).label("oldest")
                ).where(event_queue.c.queue_name == self.name)
            ).one()
        if row.oldest is None:
            return 0.0
        return max(0.0, (int(row.now) - int(row.oldest)) / 1000)

    def close(self) -> None:
        """Nothing to release: the engine's pool is shared by the process (``warehouse.db.get_engine``)."""

    def _receipt(self, delivery: Delivery) -> _Receipt:
        if not isinstance(delivery.receipt, _Receipt):
            raise StaleDelivery(f"{delivery.message.id=} was not received from a SqlQueue")
        return delivery.receipt
