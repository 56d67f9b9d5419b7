"""Apply one batch of queued webhook events to the warehouse: one transaction, exactly one effect per event.

Per batch (plain Python; the drain loop and the Dagster op call it):

1. **Plan** (no database): parse every body once, route it (``events.routing``), and map snapshot events per
   contract with the vectorised engine (one ``map_chunk`` per contract and batch) and HubSpot property
   changes per object type (``events.hubspot``). Events that cannot apply are rejected here with a check
   and a reason; an event delivered twice in the batch is kept once.
2. **BEGIN** (on SQLite the write lock is taken first). The batch's ledger rows go into a temporary table
   (COPY); events whose id is already in ``processed_events`` are duplicates: nothing of theirs is written.
3. Stage and merge per canonical table (``CanonicalStage``: COPY on Postgres, one ``INSERT … ON CONFLICT …
   WHERE newer`` merge), so an older event never overwrites newer state; events whose version lost (older
   than the stored row, or superseded in the batch) are ``stale``. HubSpot patches read the rows ``FOR
   UPDATE``, patch and merge; a change for an unknown object is rejected (``unknown_object``). Then the
   ledger rows are written once, with their final outcome, by one ``INSERT … SELECT … ON CONFLICT DO
   NOTHING RETURNING``: a row a concurrent drain wrote first makes that event a duplicate too (the merges
   are idempotent, so its effect was not repeated). A rejected event whose dead letter is already pending
   is a redelivery of it: acked as a duplicate, so each poison event is dead-lettered once.
4. When the queue is the SQL queue in this same database, the dead letters are written and the queue rows
   deleted in this transaction too: effect, ledger row and ack commit together (exactly once on that
   backend). **COMMIT**.
5. Otherwise (RabbitMQ, or a queue table in another database) deliveries are acked after the COMMIT and the
   rejected ones dead-lettered. A crash between COMMIT and ack makes the broker redeliver: every id is then
   in the ledger, so the redelivery is counted as duplicates and changes nothing.

Database failures (through SQLAlchemy or straight from the driver) are classified: unreachable, timeouts,
deadlocks, locks raise ``WarehouseUnavailable`` (the drain gives the batch back without spending attempts),
a missing schema ``WarehouseConfigError``, a refused value or constraint ``BatchRefused`` (the drain bisects
the batch to isolate the event at fault); anything else is a bug and propagates.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import sqlalchemy as sa

from integration_assets.contracts.records import RawChunk, flatten_record
from integration_assets.contracts.spec import Contract
from integration_assets.events import hubspot
from integration_assets.events.errors import (
    BatchRefused,
    EventError,
    EventRejected,
    WarehouseConfigError,
    WarehouseUnavailable,
)
from integration_assets.events.routing import Router, parse
from integration_assets.mapping.engine import ContractMapper
from integration_assets.queue import Delivery, Queue, QueueError, StaleDelivery
from integration_assets.queue.keys import CONTENT_HEADER, collision_key, message_fingerprint
from integration_assets.queue.sql import EventDeadLetter, SqlQueue, event_fingerprint, write_dead_letters
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import dead_letters, processed_events
from integration_assets.warehouse.writer import CanonicalStage

log = logging.getLogger(__name__)

# Lifecycle order of statuses (../shared/SOURCES.md §3.1, §4.2). Stripe's ``created`` has whole seconds and
# two events of one object often share a second (processing → succeeded); the rank is added to
# source_updated_at in microseconds, so within a second the later state wins the merge. Unlisted: 0.
PAYMENT_STATUS_RANK: dict[str, int] = {
    "payment_intent:requires_payment_method": 0,
    "payment_intent:requires_confirmation": 1,
    "payment_intent:requires_action": 2,
    "payment_intent:processing": 3,
    "payment_intent:requires_capture": 4,
    "payment_intent:canceled": 5,
    "payment_intent:succeeded": 5,
    "charge:pending": 0,
    "charge:failed": 1,
    "charge:succeeded": 1,
    "refund:pending": 0,
    "refund:requires_action": 1,
    "refund:failed": 2,
    "refund:canceled": 2,
    "refund:succeeded": 2,
}
TRACKER_STATUS_RANK: dict[str, int] = {
    "unknown": 0,
    "pre_transit": 1,
    "in_transit": 2,
    "out_for_delivery": 3,
    "available_for_pickup": 4,
    "delivered": 5,
    "return_to_sender": 5,
    "failure": 5,
    "cancelled": 5,
    "error": 5,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that goes to the dead letters (check and reason as stored there)."""

    delivery: Delivery
    check: str
    reason: str


@dataclass
class BatchResult:
    """What one batch (or a whole drain, when added up) did; every delivery is counted exactly once in
    applied + stale + ignored + duplicates + dead_lettered + retried."""

    batch_id: str
    events_in: int = 0
    applied: int = 0
    stale: int = 0
    ignored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    ack_failed: int = 0  # committed, but the ack did not reach the queue: they come back as duplicates
    tables: Counter[str] = field(default_factory=Counter)  # events applied per canonical table
    reasons: Counter[str] = field(default_factory=Counter)  # dead letters per check
    acked_in_transaction: bool = False

    @property
    def balanced(self) -> bool:
        settled = (
            self.applied + self.stale + self.ignored + self.duplicates + self.dead_lettered + self.retried
        )
        return settled == self.events_in

    def add(self, other: BatchResult) -> None:
        for name in (
            "events_in",
            "applied",
            "stale",
            "ignored",
            "duplicates",
            "dead_lettered",
            "retried",
            "ack_failed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tables.update(other.tables)
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "events_in": self.events_in,
            "applied": self.applied,
            "stale": self.stale,
            "ignored": self.ignored,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "retried": self.retried,
            "ack_failed": self.ack_failed,
            "tables": dict(self.tables),
            "dead_letter_reasons": dict(self.reasons),
        }


@dataclass
class _Item:
    """An accepted event: it gets a ledger row unless it turns out to be a duplicate."""

    pos: int
    delivery: Delivery
    target: str | None = None
    object_id: str | None = None
    outcome: str = "applied"
    fingerprint: str | None = None  # content hash (queue.keys): tells a duplicate from a key collision


@dataclass
class _Plan:
    """A batch parsed, routed and mapped: everything that needs no database."""

    items: dict[int, _Item] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    batch_duplicates: list[Delivery] = field(default_factory=list)
    frames: dict[str, list[pd.DataFrame]] = field(default_factory=lambda: defaultdict(list))
    hubspot: list[hubspot.PlannedChanges] = field(default_factory=list)
    # GDPR erasure requests (pos, table, object id, occurredAt), and the erasures the transaction ran
    # (integration_assets.privacy: their files are done after the commit).
    erasures: list[tuple[int, str, str, datetime]] = field(default_factory=list)
    erased: list[Any] = field(default_factory=list)

    def reject(self, pos: int, check: str, reason: str) -> None:
        item = self.items.pop(pos)
        self.rejections.append(Rejection(item.delivery, check, reason))

    def collide(self, delivery: Delivery, fingerprint: str, before: str) -> None:
        """``delivery`` has the key of an event with other content (``before``): a key collision. It is
        dead-lettered under its own key (``queue.keys.collision_key``), so it neither overwrites the first
        event's dead letter nor is taken for a redelivery of it; the queue settles the original delivery."""
        m = delivery.message
        alias = Delivery(
            replace(m, id=collision_key(m.id, fingerprint)), delivery.redelivered, delivery.receipt
        )
        reason = (
            f"key {m.id} was already taken by an event with other content (content {before[:12]}, this one "
            f"{fingerprint[:12]}): two different events under one key; the first is kept, this one is here"
        )
        self.rejections.append(Rejection(alias, "key_collision", reason))


@dataclass(frozen=True, slots=True)
class Committed:
    """A batch whose effect is committed and whose deliveries are not settled yet (``EventProcessor.settle``)."""

    plan: _Plan
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


def _rank_microseconds(table: str, frame: pd.DataFrame) -> pd.Series:
    if table == "payments":
        key = frame["object_type"].astype(object).fillna("") + ":" + frame["status"].astype(object).fillna("")
        rank = key.map(PAYMENT_STATUS_RANK).fillna(0).astype("int64") * 2
        refunded = frame["amount_refunded"].fillna(0).to_numpy() > 0  # charge.refunded after charge.succeeded
        return rank + refunded.astype("int64")
    if table == "shipment_events":
        return frame["status"].astype(object).map(TRACKER_STATUS_RANK).fillna(0).astype("int64")
    return pd.Series(0, index=frame.index, dtype="int64")


class _Node:
    __slots__ = ("leaves", "subs")

    def __init__(self) -> None:
        self.leaves: dict[str, list[int]] = {}
        self.subs: dict[str, _Node] = {}


class _Extractor:
    """Pulls a contract's dotted fields out of each event in one walk: the fields are arranged as a tree of
    their path segments, so a shared prefix (``data.object.``) is looked up once per event, not once per
    field. The values are exactly those of ``flatten_record``: an event in which a dict on the way holds a
    key with a dot (flatten_record would join it) is flattened by flatten_record itself."""

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = list(fields)
        self.root = _Node()
        for index, name in enumerate(self.fields):
            node = self.root
            *path, leaf = name.split(".")
            for part in path:
                node = node.subs.setdefault(part, _Node())
            node.leaves.setdefault(leaf, []).append(index)

    def columns(self, docs: Sequence[dict[str, Any]]) -> list[list[Any]]:
        out: list[list[Any]] = [[None] * len(docs) for _ in self.fields]
        for row, doc in enumerate(docs):
            if not self._walk(doc, self.root, out, row):
                flat = flatten_record(doc)
                for j, name in enumerate(self.fields):
                    out[j][row] = flat.get(name)
        return out

    def _walk(self, node: dict[str, Any], tree: _Node, out: list[list[Any]], row: int) -> bool:
        if any("." in key for key in node):
            return False
        for key, indexes in tree.leaves.items():
            if key in node:
                value = node[key]
                if isinstance(value, dict) and value:  # flatten_record expands it: no such column
                    continue
                for j in indexes:
                    out[j][row] = value
        for key, sub in tree.subs.items():
            value = node.get(key)
            if isinstance(value, dict) and value and not self._walk(value, sub, out, row):
                return False
        return True


def _column(values: list[Any]) -> pd.Series:
    """One source column with the narrowest dtype pyarrow infers (strings, integers, floats, booleans), so
    the mapping engine takes its vectorised paths; mixed or nested values stay Python objects, as from a
    JSON file."""
    try:
        kind = pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError):
        return pd.Series(values, dtype=object)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pd.Series(pd.array(values, dtype=pd.StringDtype("pyarrow")))
    if pa.types.is_integer(kind):
        return pd.Series(pd.array(values, dtype="Int64"))
    if pa.types.is_floating(kind):
        return pd.Series(values, dtype="float64")
    if pa.types.is_boolean(kind):
        return pd.Series(pd.array(values, dtype="boolean"))
    return pd.Series(values, dtype=object)


def raw_frame(docs: Sequence[dict[str, Any]], fields: Sequence[str]) -> pd.DataFrame:
    """The raw chunk of a batch of events for a contract: one column per contract field (dotted as
    ``flatten_record`` names them), typed per column."""
    values = _Extractor(fields).columns(docs)
    return pd.DataFrame({name: _column(column) for name, column in zip(fields, values, strict=True)})


class LedgerStage:
    """The batch's ledger rows in a temporary table (COPY on Postgres): duplicates are found with one join,
    outcomes are settled there (a temporary table is cheap to update: no WAL, no index), and the ledger rows
    are written once, with their final outcome, by one ``INSERT … SELECT … ON CONFLICT DO NOTHING``."""

    NAME = "_stage_events"
    COLUMNS = (
        "pos",
        "source",
        "event_id",
        "event_type",
        "received_at",
        "outcome",
        "target_table",
        "object_id",
        "content_hash",
    )

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        if self.pg:
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {self.NAME} (pos bigint, source text, event_id text, event_type text, "
                "received_at timestamptz, outcome text, target_table text, object_id text, content_hash text) "
                "ON COMMIT DROP"
            )
        else:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{self.NAME}")
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {self.NAME} (pos INTEGER, source TEXT, event_id TEXT, event_type TEXT, "
                "received_at TEXT, outcome TEXT, target_table TEXT, object_id TEXT, content_hash TEXT)"
            )

    def add(self, items: Sequence[_Item]) -> None:
        raw = self.conn.connection.driver_connection
        assert raw is not None  # a live DBAPI connection inside the transaction
        if self.pg:
            cols = ", ".join(self.COLUMNS)
            with raw.cursor() as cur, cur.copy(f"COPY {self.NAME} ({cols}) FROM STDIN") as copy:
                for i in items:
                    m = i.delivery.message
                    copy.write_row(
                        (
                            i.pos,
                            m.source,
                            m.id,
                            m.event_type[:128],
                            m.received_at,
                            i.outcome,
                            i.target,
                            i.object_id,
                            i.fingerprint,
                        )
                    )
            self.conn.exec_driver_sql(f"ANALYZE {self.NAME}")
            return
        rows = [
            (
                i.pos,
                i.delivery.message.source,
                i.delivery.message.id,
                i.delivery.message.event_type[:128],
                # SQLAlchemy's storage format of DateTime on SQLite (UTC), like the canonical writer.
                i.delivery.message.received_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
                i.outcome,
                i.target,
                i.object_id,
                i.fingerprint,
            )
            for i in items
        ]
        raw.executemany(f"INSERT INTO {self.NAME} VALUES ({', '.join('?' for _ in self.COLUMNS)})", rows)

    def seen_before(self) -> tuple[set[int], dict[int, str]]:
        """Events whose key is already in the ledger: (positions of duplicates, position -> the ledger's
        content hash for key collisions, i.e. the same key with other content). Nothing of either is written.
        A ledger row without a hash (written before hashes were kept) cannot tell: a duplicate."""
        sql = (
            f"SELECT e.pos, p.content_hash, e.content_hash FROM {self.NAME} e JOIN processed_events p "
            "ON p.source = e.source AND p.event_id = e.event_id"
        )
        duplicates: set[int] = set()
        collisions: dict[int, str] = {}
        for pos, theirs, mine in self.conn.exec_driver_sql(sql):
            if theirs and mine and theirs != mine:
                collisions[int(pos)] = theirs
            else:
                duplicates.add(int(pos))
        return duplicates, collisions

    def lost(self, stage: CanonicalStage, table: str, batch_id: str) -> set[int]:
        """After the merge of ``table``: staged positions whose version is not the row now stored (older than
        the warehouse's, or superseded in this batch)."""
        q = self.conn.dialect.identifier_preparer.quote
        sql = sa.text(
            f"SELECT s.{q('_pos')} FROM {q(stage.name)} s JOIN {q(table)} t "
            "ON t.source_system = s.source_system AND t.source_id = s.source_id "
            "WHERE NOT (t.load_id = :batch_id AND t.source_updated_at = s.source_updated_at)"
        )
        return {int(r[0]) for r in self.conn.execute(sql, {"batch_id": batch_id})}

    def set_outcome(self, outcome: str, positions: Sequence[int]) -> None:
        if not positions:
            return
        if self.pg:
            self.conn.execute(
                sa.text(f"UPDATE {self.NAME} SET outcome = :o WHERE pos = ANY(CAST(:p AS bigint[]))"),
                {"o": outcome, "p": list(positions)},
            )
        else:
            self.conn.execute(
                sa.text(f"UPDATE {self.NAME} SET outcome = :o WHERE pos = :p"),
                [{"o": outcome, "p": p} for p in positions],
            )

    def write(self, batch_id: str, applied_at: datetime) -> set[tuple[str, str]]:
        """Insert the ledger rows of the events processed (not duplicates, not rejected), in key order (one
        lock order for concurrent drains). Returns the keys inserted; an event a concurrent drain recorded
        first is not, and counts as a duplicate (its effect is idempotent: it changed nothing)."""
        sql = sa.text(
            "INSERT INTO processed_events (source, event_id, event_type, received_at, applied_at, outcome, "
            "batch_id, target_table, object_id, content_hash) "
            "SELECT source, event_id, event_type, received_at, :applied_at, outcome, :batch_id, target_table, "
            f"object_id, content_hash FROM {self.NAME} WHERE outcome IN ('applied', 'stale', 'ignored') "
            "ORDER BY source, event_id ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
        ).bindparams(sa.bindparam("applied_at", type_=processed_events.c.applied_at.type))
        return {
            (r[0], r[1]) for r in self.conn.execute(sql, {"applied_at": applied_at, "batch_id": batch_id})
        }


class EventProcessor:
    """Applies batches of deliveries to the warehouse ``engine`` (see the module docstring)."""

    def __init__(self, engine: sa.Engine, *, max_field_bytes: int | None = None) -> None:
        self.engine = engine
        self.router = Router()
        self.max_field_bytes = max_field_bytes or get_settings().max_field_bytes
        self._mappers: dict[str, tuple[Contract, ContractMapper]] = {}
        self._erasures_resumed = False  # erasures a crash left half done are finished after the first batch

    # -- plan (no database) ------------------------------------------------------------------------------
    def _mapper(self, contract: Contract) -> ContractMapper:
        cached = self._mappers.get(contract.id)
        if cached is None or cached[0] is not contract:  # the contract file was edited and reloaded
            cached = (contract, ContractMapper(contract, max_field_bytes=self.max_field_bytes))
            self._mappers[contract.id] = cached
        return cached[1]

    def plan(self, deliveries: Sequence[Delivery]) -> _Plan:
        """Parse, route and map a batch (pure CPU: the drain runs it in a worker thread, one batch ahead)."""
        self.router.refresh()
        plan = _Plan()
        seen: dict[str, str] = {}  # key -> content hash of its first delivery in the batch
        collisions: set[tuple[str, str]] = set()  # (key, content hash) already dead-lettered as a collision
        groups: dict[str, tuple[Any, list[tuple[int, dict[str, Any]]]]] = {}
        for pos, d in enumerate(deliveries):
            m = d.message
            fingerprint = message_fingerprint(m.source, m.body, m.headers)
            before = seen.get(m.id)
            if before is not None:
                if before == fingerprint or (m.id, fingerprint) in collisions:
                    plan.batch_duplicates.append(d)
                else:
                    collisions.add((m.id, fingerprint))
                    plan.collide(d, fingerprint, before)
                continue
            seen[m.id] = fingerprint
            try:
                doc = parse(m)
                route = self.router.route(m, doc)
            except EventRejected as exc:
                plan.rejections.append(Rejection(d, exc.check, exc.reason))
                continue
            if route.ignored:  # a type policies.yaml ignores: counted in the ledger, not applied
                plan.items[pos] = _Item(pos, d, outcome="ignored", fingerprint=fingerprint)
                continue
            plan.items[pos] = _Item(pos, d, fingerprint=fingerprint)
            groups.setdefault(route.key, (route, []))[1].append((pos, doc))
        for route, members in groups.values():
            if route.erase_table is not None:
                self._plan_erasures(route.erase_table, members, plan)
                continue
            if route.contract is not None:
                self._plan_snapshots(route.contract, members, plan)
            else:
                self._plan_hubspot(route.hubspot_table, members, plan)
        return plan

    def _plan_snapshots(
        self, contract: Contract, members: list[tuple[int, dict[str, Any]]], plan: _Plan
    ) -> None:
        """Events carrying a full object snapshot (Stripe, EasyPost): map with the contract, vectorised."""
        raw = raw_frame([doc for _, doc in members], list(contract.fields))
        positions = np.fromiter((pos for pos, _ in members), dtype=np.int64, count=len(members))
        mapped = self._mapper(contract).map_chunk(RawChunk(raw, positions, []))
        for f in mapped.failures:
            plan.reject(int(f.position), f.check, f"{contract.id}: {f.reason}")
        frame = mapped.frame
        if frame.empty:
            return
        frame["source_updated_at"] = frame["source_updated_at"] + pd.to_timedelta(
            _rank_microseconds(contract.target, frame).to_numpy(), unit="us"
        )
        for pos, source_id in zip(
            frame["_pos"].tolist(), frame["source_id"].astype(object).tolist(), strict=True
        ):
            item = plan.items[int(pos)]
            item.target, item.object_id = contract.target, source_id
        plan.frames[contract.target].append(frame)

    @staticmethod
    def _plan_erasures(table: str, members: list[tuple[int, dict[str, Any]]], plan: _Plan) -> None:
        """``contact.privacyDeletion``: a GDPR erasure of the object (docs/PRIVACY.md), run in the batch's
        transaction. It needs the object's id; its time is only recorded."""
        from integration_assets.privacy.subjects import canonical_id

        for pos, doc in members:
            object_id = canonical_id(doc.get("objectId"))
            occurred = doc.get("occurredAt")
            if object_id is None or isinstance(occurred, bool) or not isinstance(occurred, int):
                plan.reject(
                    pos,
                    "invalid_payload",
                    "HubSpot privacyDeletion needs objectId (integer) and occurredAt (epoch ms)",
                )
                continue
            item = plan.items[pos]
            item.target, item.object_id = table, object_id
            when = datetime.fromtimestamp(occurred / 1000, UTC) if 0 <= occurred < 10**14 else utcnow()
            plan.erasures.append((pos, table, object_id, when))

    def _plan_hubspot(
        self, table: str | None, members: list[tuple[int, dict[str, Any]]], plan: _Plan
    ) -> None:
        assert table is not None
        planned, rejected, ignored = hubspot.plan(table, [hubspot.Change(pos, doc) for pos, doc in members])
        for pos, (check, reason) in rejected.items():
            plan.reject(pos, check, reason)
        for pos, doc in members:
            item = plan.items.get(pos)
            if item is None:
                continue
            item.target = table
            item.object_id = hubspot.object_id(doc.get("objectId")) or str(doc.get("objectId"))[:64]
            if pos in ignored:
                item.outcome = "ignored"
        if planned is not None:
            plan.hubspot.append(planned)

    # -- apply (one transaction) ---------------------------------------------------------------------------
    def process(
        self,
        deliveries: Sequence[Delivery],
        batch_id: str,
        *,
        queue: Queue,
        plan: _Plan | None = None,
        ack_in_transaction: bool | None = None,
        after_commit: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """Apply ``deliveries`` and settle them on ``queue``. ``plan`` is ``self.plan(deliveries)`` when it was
        made ahead (the drain plans the next batch while this one is written). ``ack_in_transaction``
        (default: when the queue is the SQL queue of this warehouse) deletes the queue rows in the effect's
        transaction. ``after_commit`` runs between COMMIT and the ack (tests use it to crash there)."""
        if ack_in_transaction is None:
            ack_in_transaction = same_database(queue, self.engine)
        in_transaction = None
        if ack_in_transaction:
            assert isinstance(queue, SqlQueue)
            in_transaction = queue
        committed = self.commit(deliveries, batch_id, plan=plan, queue=in_transaction)
        return self.settle(queue, committed, after_commit)

    def commit(
        self,
        deliveries: Sequence[Delivery],
        batch_id: str,
        *,
        plan: _Plan | None = None,
        queue: SqlQueue | None = None,
    ) -> Committed:
        """The effect of a batch, committed; ``queue`` (the SQL queue of this warehouse) is settled in the same
        transaction. Without ``queue`` nothing here touches a queue, so this may run in another thread than
        the one that received the deliveries; ``settle`` then acks them there."""
        plan = plan if plan is not None else self.plan(deliveries)
        result = BatchResult(batch_id, events_in=len(deliveries), acked_in_transaction=queue is not None)
        try:
            with self.engine.begin() as conn:
                self._apply(conn, plan, batch_id, result)
                if queue is not None:
                    self._settle_in_transaction(conn, queue, plan, batch_id)
        except (sa.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error) as exc:
            classified = classify_db_error(exc)
            if classified is not None:
                raise classified from exc
            raise
        result.dead_lettered = len(plan.rejections)
        result.reasons.update(r.check for r in plan.rejections)
        return Committed(plan, result)

    def settle(
        self,
        queue: Queue,
        committed: Committed,
        after_commit: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """After ``commit``: ack the batch (unless it was acked in the transaction) and dead-letter what was
        rejected. ``after_commit`` runs first (tests crash there)."""
        plan, result = committed.plan, committed.result
        if after_commit is not None:
            after_commit(result)
        if not result.acked_in_transaction:
            self._settle_after_commit(queue, plan, result)
        if plan.erased or not self._erasures_resumed:
            self._erasures_resumed = True
            self._finish_erasures(plan, result)
        return result

    def _apply(self, conn: sa.Connection, plan: _Plan, batch_id: str, result: BatchResult) -> None:
        items = sorted(plan.items.values(), key=lambda i: (i.delivery.message.source, i.delivery.message.id))
        if not items:
            self._known_dead_letters(conn, plan)
            result.duplicates = len(plan.batch_duplicates)
            return
        if conn.dialect.name == "sqlite":
            # The driver begins SQLite's transaction at the first write: take the write lock now, so that
            # the reads below (duplicates, current HubSpot rows) see the state the writes will apply to.
            conn.exec_driver_sql("UPDATE processed_events SET outcome = outcome WHERE 0")
        if plan.erasures:
            from integration_assets.privacy.erase import merge_lock

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
            stage.merge()
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
            self._erase(conn, plan, fresh)
        written = ledger.write(batch_id, utcnow())
        self._known_dead_letters(conn, plan)
        for i in plan.items.values():
            if i.outcome != "duplicate" and (i.delivery.message.source, i.delivery.message.id) not in written:
                i.outcome = "duplicate"  # recorded meanwhile by a concurrent drain
        counts = Counter(i.outcome for i in plan.items.values())
        result.applied, result.stale, result.ignored = counts["applied"], counts["stale"], counts["ignored"]
        result.duplicates = counts["duplicate"] + len(plan.batch_duplicates)
        result.tables.update(i.target for i in plan.items.values() if i.outcome == "applied" and i.target)

    @staticmethod
    def _erase(conn: sa.Connection, plan: _Plan, fresh: set[int]) -> None:
        """The warehouse phase of each erasure request of the batch, after the batch's own patches (so a change
        of the same contact in this batch is erased too); this batch's queue rows are settled by the batch."""
        from integration_assets.privacy.erase import erase_warehouse
        from integration_assets.privacy.subjects import Subject

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

    def _finish_erasures(self, plan: _Plan, result: BatchResult) -> None:
        """After the commit: the file phase of the batch's erasures, and of any a crash left unfinished (one
        small query when there are none). A failure leaves them ``warehouse_done`` for the next batch that
        erases, the next drain, or ``integration-assets privacy resume``."""
        from integration_assets.privacy.erase import finish_pending

        try:
            finish_pending(self.engine, known={e.id: e for e in plan.erased})
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            log.warning(
                "batch %s: erasure files not finished (%s); they stay pending: %s",
                result.batch_id,
                ", ".join(str(e.id) for e in plan.erased),
                type(exc).__name__,
            )

    @staticmethod
    def _known_dead_letters(conn: sa.Connection, plan: _Plan) -> None:
        """A rejected event whose dead letter is already there (pending, or discarded by someone) is a
        redelivery of it: acked as a duplicate, so each event is in the dead letters once. A replayed one is
        rejected again, which puts its dead letter back to pending with the new reason."""
        if not plan.rejections:
            return
        prints = {
            event_fingerprint(r.delivery.message.source, r.delivery.message.id): r for r in plan.rejections
        }
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
            mine = message_fingerprint(m.source, m.body, m.headers)
            if isinstance(before, str) and before and before != mine:
                alias = _Plan()
                alias.collide(prints[fingerprint].delivery, mine, before)
                collided.extend(alias.rejections)
                found.discard(fingerprint)
                prints.pop(fingerprint)
        if collided:  # a colliding content seen before is a redelivery of that collision
            aliases = {
                event_fingerprint(r.delivery.message.source, r.delivery.message.id): r for r in collided
            }
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

    # -- settle --------------------------------------------------------------------------------------------
    @staticmethod
    def _settled(plan: _Plan) -> list[Delivery]:
        return [i.delivery for i in plan.items.values()] + plan.batch_duplicates

    def _settle_in_transaction(
        self, conn: sa.Connection, queue: SqlQueue, plan: _Plan, batch_id: str
    ) -> None:
        details = {"queue": queue.name, "backend": "sql", "batch_id": batch_id}
        write_dead_letters(
            conn,
            [
                EventDeadLetter.of(
                    r.delivery.message, r.reason, r.check, max(1, r.delivery.attempts), details
                )
                for r in plan.rejections
            ],
        )
        queue.ack(self._settled(plan) + [r.delivery for r in plan.rejections], connection=conn)

    def _settle_after_commit(self, queue: Queue, plan: _Plan, result: BatchResult) -> None:
        settled = self._settled(plan)
        try:
            queue.ack(settled)
        except QueueError as exc:
            # The effect is committed; the messages come back and are then duplicates in the ledger.
            result.ack_failed += len(settled)
            log.warning(
                "batch %s: ack of %d delivery(ies) failed after commit: %s",
                result.batch_id,
                len(settled),
                exc,
            )
        for r in plan.rejections:
            try:
                queue.dead_letter(r.delivery, r.reason, r.check)
            except StaleDelivery:
                log.info(
                    "batch %s: %s was settled elsewhere; not dead-lettered here",
                    result.batch_id,
                    r.delivery.message.id,
                )
            except QueueError as exc:
                # Still unsettled: it is delivered again and rejected again.
                result.dead_lettered -= 1
                result.retried += 1
                log.warning(
                    "batch %s: dead-lettering %s failed: %s", result.batch_id, r.delivery.message.id, exc
                )


def same_database(queue: Queue, engine: sa.Engine) -> bool:
    """True when ``queue`` is the SQL queue living in the warehouse ``engine`` points at."""
    return isinstance(queue, SqlQueue) and (
        queue.engine is engine
        or queue.engine.url.render_as_string(hide_password=False)
        == engine.url.render_as_string(hide_password=False)
    )
