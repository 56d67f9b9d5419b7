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

Dedup choice: ``(queue_name, message_id)`` is unique and publishing is ``INSERT … ON CONFLICT DO
NOTHING RETURNING``, so identical re-deliveries of an event that is still pending (waiting, claimed or in
backoff) collapse into one row, counted as duplicates (``Queue.last_publish``). A message whose key is
taken by a pending row with *other* content (``queue.keys`` fingerprints) is a key collision: never dropped,
it is dead-lettered (check ``key_collision``) in the publish transaction. After the row is acked, the same
id can be enqueued again; the consumer's event-id ledger then tells a duplicate from a collision.

Dead letters go to the warehouse ``dead_letters`` table (stage ``event``) in the same transaction that
deletes the queue row: an event is always in exactly one of the two places.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from integration_assets.queue.base import (
    Delivery,
    Message,
    PublishOutcome,
    Queue,
    QueueConfigError,
    QueueUnavailable,
    RetryOutcome,
    StaleDelivery,
    TerminalQueueError,
    backoff_delay,
    truncate_reason,
)
from integration_assets.queue.keys import collision_key, message_fingerprint
from integration_assets.warehouse.db import get_engine, is_postgres
from integration_assets.warehouse.schema import dead_letters, event_queue

log = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "events"
DEFAULT_MAX_ATTEMPTS = 5
# How often receive(wait_s=…) polls an empty table. Short enough for interactive use, long enough not
# to matter to the database.
POLL_INTERVAL_S = 0.05


# ------------------------------------------------------------------------------ dead-letter records
@dataclass(frozen=True, slots=True)
class EventDeadLetter:
    """One event on its way to the ``dead_letters`` table. Not a ``Message``: what comes back from a broker's
    DLQ may be malformed, and must still be recorded."""

    source: str
    message_id: str
    event_type: str
    body: bytes
    headers: Mapping[str, Any]
    received_at: datetime | None
    reason: str
    check_name: str
    attempts: int
    details: Mapping[str, Any]  # backend facts kept in ``errors`` (x-death, queue name, ...)

    @classmethod
    def of(
        cls, message: Message, reason: str, check_name: str, attempts: int, details: Mapping[str, Any]
    ) -> EventDeadLetter:
        return cls(
            source=message.source,
            message_id=message.id,
            event_type=message.event_type,
            body=message.body,
            headers=message.headers,
            received_at=message.received_at,
            reason=reason,
            check_name=check_name,
            attempts=attempts,
            details=details,
        )


def event_fingerprint(source: str, message_id: str) -> str:
    """One dead-letter row per event: seeing the same event fail again updates that row."""
    return hashlib.sha256(f"event\x1f{source}\x1f{message_id}".encode()).hexdigest()


def _payload_text(body: bytes) -> str:
    # The body was verified and parsed as JSON before it was enqueued, so it is UTF-8 text; raw control
    # characters cannot occur in valid JSON. Escape NUL anyway: Postgres text rejects byte 0x00.
    return body.decode("utf-8", errors="backslashreplace").replace("\x00", "\\u0000")


def write_dead_letters(conn: sa.Connection, items: Sequence[EventDeadLetter]) -> None:
    """Upsert events into ``dead_letters`` (stage ``event``) inside the caller's transaction.

    A second failure of the same event updates its row: latest reason/payload, attempts added, last_seen
    bumped, and a row that had been replayed goes back to ``pending`` (the replay failed). A ``discarded``
    row stays discarded: an operator decided that already.
    """
    if not items:
        return
    now = datetime.now(UTC)
    rows = []
    for item in items:
        errors = [
            {"check": item.check_name, "reason": item.reason, "attempts": item.attempts, **item.details}
        ]
        headers = dict(item.headers)
        if item.received_at is not None:
            headers["received_at"] = item.received_at.isoformat()
        rows.append(
            {
                "fingerprint": event_fingerprint(item.source, item.message_id),
                "source_system": item.source[:32],
                "entity": item.event_type[:64],
                "natural_key": item.message_id[:255],
                "stage": "event",
                "check_name": item.check_name[:128],
                "reason": truncate_reason(item.reason),
                "errors": json.dumps(errors, default=str, sort_keys=True),
                "raw_record": _payload_text(item.body),
                "headers": json.dumps(headers, default=str, sort_keys=True),
                "status": "pending",
                "attempts": max(1, item.attempts),
                "first_seen": now,
                "last_seen": now,
            }
        )
    insert = pg_dialect.insert if conn.dialect.name == "postgresql" else sqlite_dialect.insert
    stmt = insert(dead_letters)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[dead_letters.c.fingerprint],
        set_={
            "entity": excluded.entity,
            "check_name": excluded.check_name,
            "reason": excluded.reason,
            "errors": excluded.errors,
            "raw_record": excluded.raw_record,
            "headers": excluded.headers,
            "attempts": dead_letters.c.attempts + excluded.attempts,
            "last_seen": excluded.last_seen,
            "status": sa.case((dead_letters.c.status == "replayed", "pending"), else_=dead_letters.c.status),
        },
    )
    conn.execute(stmt, rows)
    from integration_assets.privacy.suppress import keep_dead_letters_erased

    keep_dead_letters_erased(
        conn, [str(r["fingerprint"]) for r in rows]
    )  # GDPR: no payload of an erased record


# ----------------------------------------------------------------------------------------- errors
def classify_db_error(exc: sa.exc.SQLAlchemyError, what: str) -> Exception:
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
        self._pg = is_postgres(self.engine)
        self._insert = pg_dialect.insert if self._pg else sqlite_dialect.insert
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
            raise classify_db_error(exc, f"{what} on queue {self.name!r}") from exc

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
        self, conn: sa.Connection, items: Sequence[tuple[_Receipt, EventDeadLetter]]
    ) -> int:
        """Delete claimed rows and write their dead letters in ``conn``'s transaction; returns rows deleted
        (the dead letters are written only for rows this claim still owned)."""
        owned: list[EventDeadLetter] = []
        for receipt, item in items:
            deleted = conn.execute(
                sa.delete(event_queue).where(
                    event_queue.c.id == receipt.row_id, event_queue.c.claim_token == receipt.claim_token
                )
            ).rowcount
            if deleted:
                owned.append(item)
        write_dead_letters(conn, owned)
        return len(owned)

    # -- producer
    def _queued_fingerprints(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, str]:
        """Content fingerprints (``queue.keys``) of the messages among ``ids`` that are queued now."""
        if not ids:
            return {}
        if self._pg:
            # An array parameter (a list of a thousand placeholders costs more to build than to run), never a
            # prepared statement: a generic plan made while the queue was nearly empty would scan the whole
            # table once it has grown; a fresh plan uses the (queue_name, message_id) index.
            raw = conn.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cur:
                cur.execute(
                    "SELECT message_id, source, body, headers FROM event_queue "
                    "WHERE queue_name = %s AND message_id = ANY(%s)",
                    (self.name, list(ids)),
                    prepare=False,
                )
                found = cur.fetchall()
        else:
            found = [
                tuple(r)
                for r in conn.execute(
                    sa.select(
                        event_queue.c.message_id,
                        event_queue.c.source,
                        event_queue.c.body,
                        event_queue.c.headers,
                    ).where(event_queue.c.queue_name == self.name, event_queue.c.message_id.in_(list(ids)))
                )
            ]
        return {
            mid: message_fingerprint(src, bytes(body), json.loads(headers))
            for mid, src, body, headers in found
        }

    def _collision(self, m: Message, mine: str, theirs: str) -> EventDeadLetter:
        return EventDeadLetter.of(
            replace(m, id=collision_key(m.id, mine)),
            f"key {m.id} is already queued with other content (content {theirs[:12]}, this one {mine[:12]}): "
            "two different events under one key; the first is processed, this one is kept here",
            "key_collision",
            1,
            {"queue": self.name, "backend": "sql", "stage": "publish"},
        )

    def publish_many(self, messages: Sequence[Message]) -> None:
        """Insert ``messages`` in one transaction; returns after COMMIT.

        A message whose key is already queued (pending, claimed or in backoff) is not stored twice: with the
        same content (``queue.keys``) it is a duplicate, counted in ``last_publish``; with other content it
        is a key collision, dead-lettered (check ``key_collision``) in the same transaction, and counted."""
        self.last_publish = PublishOutcome()
        if not messages:
            return
        first: dict[str, Message] = {}
        repeated: list[Message] = []  # the same key twice in this publish
        for m in messages:
            if m.id in first:
                repeated.append(m)
            else:
                first[m.id] = m
        # A plain executemany, whose rowcount is the number of rows inserted (SQLAlchemy's Core insert of many
        # rows reports -1 on psycopg, and RETURNING makes one statement of thousands of placeholders).
        now = (
            "CAST(floor(extract(epoch FROM now()) * 1000) AS BIGINT)"
            if self._pg
            else str(int(time.time() * 1000))
        )
        stmt = sa.text(
            "INSERT INTO event_queue (queue_name, message_id, source, event_type, body, headers, received_at_ms, "
            f"enqueued_at_ms, visible_at_ms, attempts) VALUES (:queue_name, :message_id, :source, :event_type, "
            f":body, :headers, :received_at_ms, {now}, {now}, 0) ON CONFLICT (queue_name, message_id) DO NOTHING"
        ).bindparams(sa.bindparam("body", type_=event_queue.c.body.type))
        duplicates: list[str] = []
        collided: list[EventDeadLetter] = []

        def compare(m: Message, theirs: str | None, mine: str | None = None) -> None:
            mine = mine or message_fingerprint(m.source, m.body, m.headers)
            if theirs is None or theirs == mine:  # None: acked meanwhile (the consumer's ledger decides then)
                duplicates.append(m.source)
            else:
                collided.append(self._collision(m, mine, theirs))

        with self._tx(f"publish of {len(first)} message(s)") as conn:
            # The keys already queued (usually none: one indexed lookup), compared by content below.
            stored = self._queued_fingerprints(conn, list(first))
            new = [m for mid, m in first.items() if mid not in stored]
            rows = [
                {
                    "queue_name": self.name,
                    "message_id": m.id,
                    "source": m.source,
                    "event_type": m.event_type,
                    "body": m.body,
                    "headers": json.dumps(dict(m.headers), sort_keys=True),
                    "received_at_ms": int(m.received_at.timestamp() * 1000),
                }
                for m in new
            ]
            inserted = conn.execute(stmt, rows).rowcount if rows else 0
            if inserted < len(new):
                # A concurrent publisher queued some of these keys in the meantime: other content is a
                # collision; equal content a duplicate (which of the equal copies is stored does not matter).
                raced = self._queued_fingerprints(conn, [m.id for m in new])
                equal: list[str] = []
                for m in new:
                    mine = message_fingerprint(m.source, m.body, m.headers)
                    if raced.get(m.id, mine) == mine:
                        equal.append(m.source)
                    else:
                        collided.append(self._collision(m, mine, raced[m.id]))
                duplicates.extend(equal[: max(0, len(new) - inserted - len(collided))])
            for mid, m in first.items():
                if mid in stored:
                    compare(m, stored[mid])
            for m in repeated:
                f = first[m.id]
                compare(m, stored.get(m.id) or message_fingerprint(f.source, f.body, f.headers))
            write_dead_letters(conn, collided)
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
        exhausted: list[tuple[_Receipt, EventDeadLetter]] = []
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
                            EventDeadLetter.of(
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

    def ack(self, deliveries: Sequence[Delivery], *, connection: sa.Connection | None = None) -> None:
        """Delete the messages. With ``connection``, the delete joins that transaction, so the consumer can
        commit its effect, its event-id ledger row and the ack atomically (exactly once on this backend)."""
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
        item = EventDeadLetter.of(
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
