"""The owner of the ``processed_events`` ledger: the rows of one batch are staged in a temporary table inside
the batch's transaction (duplicates and key collisions are found with one join, outcomes are settled there) and
written once at the end with their final outcome; retention deletes old rows through :func:`prune`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from integration_assets.events.extract import Item
from integration_assets.warehouse.schema import processed_events
from integration_assets.warehouse.writer import CanonicalStage


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

    def add(self, items: Sequence[Item]) -> None:
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


def take_write_lock(conn: sa.Connection) -> None:
    """Take the database's write lock now with a ledger write that changes nothing (SQLite begins its
    transaction at the first write, so reads before it could see an older state than the writes apply to)."""
    conn.exec_driver_sql("UPDATE processed_events SET outcome = outcome WHERE 0")


def count_applied_before(conn: sa.Connection, cutoff: datetime) -> int:
    """How many ledger rows :func:`prune` would delete (a retention dry run)."""
    stmt = (
        sa.select(sa.func.count()).select_from(processed_events).where(processed_events.c.applied_at < cutoff)
    )
    return int(conn.execute(stmt).scalar_one())


def prune(conn: sa.Connection, cutoff: datetime, *, limit: int) -> int:
    """Delete up to ``limit`` ledger rows applied before ``cutoff`` (retention: an event that old is not
    redelivered any more). Returns how many were deleted."""
    p = processed_events.c
    batch = sa.select(p.source, p.event_id).where(p.applied_at < cutoff).limit(limit)
    stmt = sa.delete(processed_events).where(sa.tuple_(p.source, p.event_id).in_(batch))
    return int(conn.execute(stmt).rowcount)
