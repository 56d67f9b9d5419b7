"""Apply a planned batch to the warehouse in one transaction: effect, ``processed_events`` ledger rows and
(on the SQL queue in the warehouse) the settling of the queue, committed together.

1. **BEGIN** (on SQLite the write lock is taken first). The batch's ledger rows go into a temporary table
   (``events.ledger``); events whose id is already in ``processed_events`` are duplicates: nothing of theirs
   is written; the same id with other content is a key collision (dead-lettered).
2. Stage and merge per canonical table (``CanonicalStage``: COPY on Postgres, one ``INSERT … ON CONFLICT …
   WHERE newer`` merge), so an older event never overwrites newer state; events whose version lost (older
   than the stored row, or superseded in the batch) are ``stale``. HubSpot patches read the rows ``FOR
   UPDATE``, patch and merge; a change for an unknown object is rejected (``unknown_object``). GDPR erasure
   requests run their warehouse phase. Then the ledger rows are written once, with their final outcome: a
   row a concurrent drain wrote first makes that event a duplicate too (the merges are idempotent, so its
   effect was not repeated). A rejected event whose dead letter is already pending is a redelivery of it:
   acked as a duplicate, so each poison event is dead-lettered once.
3. ``in_transaction`` (``events.settle``) settles the queue inside the transaction when it can. **COMMIT**.

Database failures (through SQLAlchemy or straight from the driver) are classified: unreachable, timeouts,
deadlocks, locks raise ``WarehouseUnavailable`` (the drain gives the batch back without spending attempts),
a missing schema ``WarehouseConfigError``, a refused value or constraint ``BatchRefused`` (the drain bisects
the batch to isolate the event at fault); anything else is a bug and propagates.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg
import sqlalchemy as sa

from integration_assets.dead_letters.store import event_fingerprint
from integration_assets.erasure.tables import erase_warehouse
from integration_assets.events import hubspot
from integration_assets.events.errors import (
    BatchRefused,
    EventError,
    WarehouseConfigError,
    WarehouseUnavailable,
)
from integration_assets.events.extract import Plan, Planner, Rejection, utcnow
from integration_assets.events.ledger import LedgerStage, take_write_lock
from integration_assets.events.results import BatchResult
from integration_assets.privacy.subjects import Subject
from integration_assets.privacy.suppress import merge_keeping_erased, merge_lock
from integration_assets.providers import volatile_fields
from integration_assets.queue import Delivery
from integration_assets.queue.keys import CONTENT_HEADER, message_fingerprint
from integration_assets.warehouse.schema import dead_letters
from integration_assets.warehouse.writer import CanonicalStage

# Settles the batch's deliveries inside its transaction (``events.settle``), given the final plan.
InTransaction = Callable[[sa.Connection, Plan], None]


@dataclass(frozen=True, slots=True)
class Committed:
    """A batch whose effect is committed and whose deliveries are not settled yet (``Settler.settle``)."""

    plan: Plan
    result: BatchResult


def classify_db_error(exc: BaseException) -> EventError | None:
    """What a database failure means for the batch, whether it came through SQLAlchemy or straight from
    the driver (COPY and executemany use the DBAPI connection): ``WarehouseConfigError`` (schema missing),
    ``WarehouseUnavailable`` (unreachable, connection lost, timeout, deadlock, locked), ``BatchRefused`` (a
    value or constraint refused); None for anything else (a bug: let it propagate)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).lower()
    if (
        "no such table" in text
        or "no such column" in text
        or ("does not exist" in text and ("relation" in text or "column" in text))
    ):
        return WarehouseConfigError(
            f"warehouse schema not migrated ({text[:200]}): run `integration-assets db upgrade`"
        )
    unavailable = (
        sa.exc.OperationalError,
        sa.exc.InterfaceError,
        sa.exc.TimeoutError,
        sa.exc.DisconnectionError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        sqlite3.OperationalError,
    )
    if isinstance(exc, unavailable) or getattr(exc, "connection_invalidated", False):
        return WarehouseUnavailable(f"warehouse unavailable: {type(orig).__name__}: {text[:200]}")
    refused = (
        sa.exc.DataError,
        sa.exc.IntegrityError,
        psycopg.DataError,
        psycopg.IntegrityError,
        sqlite3.DataError,
        sqlite3.IntegrityError,
    )
    if isinstance(exc, refused):
        return BatchRefused(f"{type(orig).__name__}: {str(orig)[:500]}")
    return None


class Applier:
    """Commits planned batches to the warehouse ``engine`` (see the module docstring)."""

    def __init__(self, engine: sa.Engine, planner: Planner | None = None) -> None:
        self.engine = engine
        self.planner = planner or Planner()

    def commit(
        self,
        deliveries: Sequence[Delivery],
        batch_id: str,
        *,
        plan: Plan | None = None,
        in_transaction: InTransaction | None = None,
    ) -> Committed:
        """The effect of a batch, committed. ``plan`` is ``planner.plan(deliveries)`` when it was made ahead.
        ``in_transaction`` settles the deliveries inside the transaction; without it nothing here touches a
        queue, so this may run in another thread than the one that received the deliveries."""
        plan = plan if plan is not None else self.planner.plan(deliveries)
        result = BatchResult(
            batch_id, events_in=len(deliveries), acked_in_transaction=in_transaction is not None
        )
        try:
            with self.engine.begin() as conn:
                self._apply(conn, plan, batch_id, result)
                if in_transaction is not None:
                    in_transaction(conn, plan)
        except (sa.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
            classified = classify_db_error(exc)
            if classified is not None:
                raise classified from exc
            raise
        result.dead_lettered = len(plan.rejections)
        result.reasons.update(r.check for r in plan.rejections)
        return Committed(plan, result)

    def _apply(self, conn: sa.Connection, plan: Plan, batch_id: str, result: BatchResult) -> None:
        items = sorted(plan.items.values(), key=lambda i: (i.delivery.message.source, i.delivery.message.id))
        if not items:
            _known_dead_letters(conn, plan)
            result.duplicates = len(plan.batch_duplicates)
            return
        if conn.dialect.name == "sqlite":
            # The driver begins SQLite's transaction at the first write: take the write lock now, so that
            # the reads below (duplicates, current HubSpot rows) see the state the writes will apply to.
            take_write_lock(conn)
        if plan.erasures:
            # Before any row lock of this batch: a load holding the merge lock may be waiting for our rows.
            for table in sorted({t for _, t, _, _ in plan.erasures}):
                merge_lock(conn, table)
        ledger = LedgerStage(conn)
        ledger.add(items)
        seen, collided = ledger.seen_before()
        for pos in seen:
            plan.items[pos].outcome = "duplicate"
        ledger.set_outcome("duplicate", sorted(seen))
        ledger.set_outcome("rejected", sorted(collided))
        for pos, before in collided.items():
            item = plan.items.pop(pos)
            plan.collide(item.delivery, item.fingerprint or "", before)
        fresh = {i.pos for i in items} - seen - set(collided)
        for table, frames in sorted(plan.frames.items()):  # one lock order for concurrent drains
            frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            if seen or collided:
                frame = frame[frame["_pos"].isin(list(fresh))]
            if frame.empty:
                continue
            stage = CanonicalStage(conn, table)
            stage.add(frame, batch_id)
            merge_keeping_erased(stage)
            lost = ledger.lost(stage, table, batch_id)
            for pos in lost:
                plan.items[pos].outcome = "stale"
            ledger.set_outcome("stale", sorted(lost))
        for planned in plan.hubspot:
            outcome = hubspot.apply(conn, planned, fresh, batch_id)
            for pos in outcome.stale:
                plan.items[pos].outcome = "stale"
            ledger.set_outcome("stale", sorted(outcome.stale))
            ledger.set_outcome("rejected", sorted(outcome.unknown))
            for pos, reason in outcome.unknown.items():
                plan.reject(pos, "unknown_object", reason)
        if plan.erasures:
            _erase(conn, plan, fresh)
        written = ledger.write(batch_id, utcnow())
        _known_dead_letters(conn, plan)
        for i in plan.items.values():
            if i.outcome != "duplicate" and (i.delivery.message.source, i.delivery.message.id) not in written:
                i.outcome = "duplicate"  # recorded meanwhile by a concurrent drain
        counts = Counter(i.outcome for i in plan.items.values())
        result.applied, result.stale, result.ignored = counts["applied"], counts["stale"], counts["ignored"]
        result.duplicates = counts["duplicate"] + len(plan.batch_duplicates)
        result.tables.update(i.target for i in plan.items.values() if i.outcome == "applied" and i.target)


def _erase(conn: sa.Connection, plan: Plan, fresh: set[int]) -> None:
    """The warehouse phase of each erasure request of the batch, after the batch's own patches (so a change
    of the same contact in this batch is erased too); this batch's queue rows are settled by the batch."""
    in_batch = {i.delivery.message.id for i in plan.items.values()}
    for pos, table, object_id, when in plan.erasures:
        if pos not in fresh:
            continue  # a redelivery of an erasure already done
        message = plan.items[pos].delivery.message
        plan.erased.append(
            erase_warehouse(
                conn,
                Subject.of(message.source, table, object_id),
                via="webhook",
                ref=message.id,
                requested_at=when,
                skip_message_ids=in_batch,
            )
        )


def _known_dead_letters(conn: sa.Connection, plan: Plan) -> None:
    """A rejected event whose dead letter is already there (pending, or discarded by someone) is a
    redelivery of it: acked as a duplicate, so each event is in the dead letters once. A replayed one is
    rejected again, which puts its dead letter back to pending with the new reason."""
    if not plan.rejections:
        return
    prints = {event_fingerprint(r.delivery.message.source, r.delivery.message.id): r for r in plan.rejections}
    found: set[str] = set()
    collided: list[Rejection] = []
    for fingerprint, headers in conn.execute(
        sa.select(dead_letters.c.fingerprint, dead_letters.c.headers).where(
            dead_letters.c.fingerprint.in_(list(prints)),
            dead_letters.c.status.in_(("pending", "discarded")),
        )
    ):
        found.add(fingerprint)
        # The same key with other content than the dead letter's (its receiver's content hash, which a
        # scrubbed raw record keeps) is a key collision, not a redelivery: it gets a dead letter of its own.
        try:
            before = json.loads(headers or "{}").get(CONTENT_HEADER)
        except (ValueError, AttributeError):
            before = None
        m = prints[fingerprint].delivery.message
        mine = message_fingerprint(m.body, m.headers, volatile_fields(m.source))
        if isinstance(before, str) and before and before != mine:
            alias = Plan()
            alias.collide(prints[fingerprint].delivery, mine, before)
            collided.extend(alias.rejections)
            found.discard(fingerprint)
            prints.pop(fingerprint)
    if collided:  # a colliding content seen before is a redelivery of that collision
        aliases = {event_fingerprint(r.delivery.message.source, r.delivery.message.id): r for r in collided}
        known = set(
            conn.scalars(
                sa.select(dead_letters.c.fingerprint).where(
                    dead_letters.c.fingerprint.in_(list(aliases)),
                    dead_letters.c.status.in_(("pending", "discarded")),
                )
            )
        )
        plan.batch_duplicates.extend(aliases[f].delivery for f in known)
        collided = [r for f, r in aliases.items() if f not in known]
    if found or collided or len(prints) < len(plan.rejections):  # (collisions were taken out of prints)
        plan.batch_duplicates.extend(prints[f].delivery for f in found)
        plan.rejections = [r for f, r in prints.items() if f not in found] + collided
