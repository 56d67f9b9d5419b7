"""The loads ledger: one row per load attempt, with its counts, status and timings.

A ``running`` row is also the claim on a file's content: a unique index (migration 0009) admits one running
load per (source_system, entity, content_hash), across processes and hosts. The row names its owner (host, pid,
process start) so that the next start can tell a load that died (kill -9, a lost container) from a live one and
mark it ``abandoned``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.settings import env
from integration_assets.warehouse.schema import loads

# A running load from another host is presumed dead when its heartbeat is older than this (the same host asks the
# kernel instead). Heartbeats are written on Postgres only: on SQLite the load's own transaction holds the write
# lock, and a SQLite warehouse is local to one host anyway.
LEASE_VAR = "INTEGRATION_LOAD_LEASE_SECONDS"


def utcnow() -> datetime:
    return datetime.now(UTC)


# The partition key of the loads started in this context (a partitioned API pull loads its file inside
# partition_scope): the ingest code stays unaware of partitions, its ledger rows still name them.
_PARTITION: contextvars.ContextVar[str | None] = contextvars.ContextVar("load_partition_key", default=None)


@contextlib.contextmanager
def partition_scope(partition_key: str | None) -> Iterator[None]:
    """Loads started inside the block record ``partition_key`` in their ledger row."""
    token = _PARTITION.set(partition_key)
    try:
        yield
    finally:
        _PARTITION.reset(token)


def current_partition() -> str | None:
    return _PARTITION.get()


def new_load_id() -> str:
    return f"ld_{utcnow():%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:10]}"


@dataclass
class LoadReport:
    """What one load did. ``rows_read == loaded + rows_duplicate + rows_quarantined`` always holds."""

    load_id: str
    source_system: str
    entity: str
    file_name: str | None
    target_table: str | None = None
    content_hash: str | None = None
    file_bytes: int | None = None
    contract: str | None = None
    kind: str = "file"
    status: str = "running"
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    reason_code: str | None = None
    error: str | None = None
    run_id: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    finished_at: datetime | None = None
    duration_ms: int | None = None
    # The bytes actually loaded when they were a snapshot of the inbox file (see inbox.process); not stored.
    loaded_path: str | None = None
    # The daily partition of a partitioned API pull (partition_scope); None for exports, events and replays.
    partition_key: str | None = field(default_factory=current_partition)

    @property
    def rows_loaded(self) -> int:
        return self.rows_inserted + self.rows_updated + self.rows_unchanged

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_loaded + self.rows_duplicate + self.rows_quarantined

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["started_at"] = self.started_at.isoformat()
        d["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        d["rows_loaded"] = self.rows_loaded
        return d

    def ledger_row(self) -> dict[str, Any]:
        return {
            "load_id": self.load_id,
            "source_system": self.source_system,
            "entity": self.entity,
            "target_table": self.target_table,
            "kind": self.kind,
            "file_name": self.file_name,
            "content_hash": self.content_hash,
            "file_bytes": self.file_bytes,
            "contract": self.contract,
            "status": self.status,
            "rows_read": self.rows_read,
            "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated,
            "rows_unchanged": self.rows_unchanged,
            "rows_duplicate": self.rows_duplicate,
            "rows_quarantined": self.rows_quarantined,
            "drift": json.dumps(self.drift) if self.drift else None,
            "error": (f"{self.reason_code}: {self.error}" if self.reason_code else self.error),
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "partition_key": self.partition_key,
        }


@dataclass(frozen=True)
class Owner:
    """The process running a load. ``started`` (process start, kernel clock ticks) tells a reused pid apart."""

    host: str
    pid: int
    started: int | None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux /proc), None where unknown."""
    try:
        stat = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115 - one read
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name (field 2) may hold spaces and parentheses
    if fields and fields[0] == "Z":  # a zombie: dead, only not reaped yet
        return -1
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(socket.gethostname()[:255], pid, _process_start(pid))


def owner_alive(host: str | None, pid: int | None, started: int | None) -> bool | None:
    """Whether the process that owns a running row still runs: None when this host cannot tell (another host)."""
    if host is None or pid is None or host != socket.gethostname()[:255]:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    now = _process_start(pid)
    if now == -1:
        return False
    return not (started is not None and now is not None and now != started)  # the pid was reused


def lease_seconds() -> float:
    return float(env(LEASE_VAR) or 600)


# Load ids this process has started and not finished: a running row of this process that is not here belongs to
# an attempt that died without recording its end (its transaction and the warehouse went away together), so the
# step's own retry, in the same process, may take its claim over.
_ACTIVE: set[str] = set()


def release(load_id: str) -> None:
    """The load ``load_id`` of this process is over, whether or not its ledger row could say so."""
    _ACTIVE.discard(load_id)


def start(conn: sa.Connection, report: LoadReport) -> None:
    _ACTIVE.add(report.load_id)
    owner = this_process()  # every row names its process, so a dead one is told from a live one
    conn.execute(
        loads.insert().values(
            **report.ledger_row(),
            owner_host=owner.host,
            owner_pid=owner.pid,
            owner_started=owner.started,
            heartbeat_at=report.started_at,
        )
    )


class AlreadyLoading(Exception):
    """Another live load holds the claim on this content."""

    def __init__(self, load_id: str, owner: str) -> None:
        super().__init__(f"already being loaded by {load_id} ({owner})")
        self.load_id, self.owner = load_id, owner


def claim(engine: sa.Engine, report: LoadReport) -> None:
    """Insert the running row of ``report`` (with its content hash) as the claim on that content.

    Raises AlreadyLoading when a live load holds it. A holder that died is marked abandoned first, then the claim
    is tried once more. Each attempt is its own transaction, so the claim is visible to other processes at once.
    """
    owner = this_process()
    row = report.ledger_row() | {
        "owner_host": owner.host,
        "owner_pid": owner.pid,
        "owner_started": owner.started,
        "heartbeat_at": report.started_at,
    }
    for attempt in (1, 2):
        try:
            _ACTIVE.add(report.load_id)
            with engine.begin() as conn:
                conn.execute(loads.insert().values(**row))
            return
        except sa.exc.IntegrityError:
            with engine.begin() as conn:
                holder = conn.execute(
                    sa.select(loads).where(
                        loads.c.source_system == report.source_system,
                        loads.c.entity == report.entity,
                        loads.c.content_hash == report.content_hash,
                        loads.c.status == "running",
                    )
                ).first()
            _ACTIVE.discard(report.load_id)
            if holder is None:
                continue  # finished between our insert and our look: try again
            if attempt == 1 and abandon_stale(engine, load_ids=[holder.load_id]):
                continue
            who = (
                f"pid {holder.owner_pid} on {holder.owner_host}" if holder.owner_host else "an older process"
            )
            raise AlreadyLoading(holder.load_id, who) from None
    raise AlreadyLoading("?", "another process")  # the claim kept changing hands: let the caller retry later


def stale_reason(row: Any, now: datetime, lease: float) -> str | None:
    """Why a running row's load is dead, or None while it may still be running."""
    me = this_process()
    if (row.owner_host, row.owner_pid, row.owner_started) == (
        me.host,
        me.pid,
        me.started,
    ) and row.load_id not in _ACTIVE:
        return "an earlier attempt in this process ended without recording it (the warehouse was unreachable)"
    alive = owner_alive(row.owner_host, row.owner_pid, row.owner_started)
    if alive is False:
        return f"the process that ran it (pid {row.owner_pid} on {row.owner_host}) is gone"
    if alive is None:
        last = row.heartbeat_at or row.started_at
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        if last is not None and now - last > timedelta(seconds=lease):
            who = f"pid {row.owner_pid} on {row.owner_host}" if row.owner_host else "an unrecorded process"
            return (
                f"no sign of life from {who} for {int((now - last).total_seconds())} s (lease {int(lease)} s)"
            )
    return None


def abandon_stale(
    engine: sa.Engine, *, load_ids: list[str] | None = None, lease: float | None = None
) -> list[str]:
    """Mark running rows whose load is dead as ``abandoned`` with the reason; returns their load ids.

    Conditional on the row still being running, so two processes cleaning up at once each mark a row once.
    """
    lease = lease_seconds() if lease is None else lease
    now = utcnow()
    query = sa.select(
        loads.c.load_id,
        loads.c.owner_host,
        loads.c.owner_pid,
        loads.c.owner_started,
        loads.c.heartbeat_at,
        loads.c.started_at,
    ).where(loads.c.status == "running")
    if load_ids is not None:
        query = query.where(loads.c.load_id.in_(load_ids))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    done = []
    for row in rows:
        reason = stale_reason(row, now, lease)
        if reason is None:
            continue
        with engine.begin() as conn:
            n = conn.execute(
                loads.update()
                .where(loads.c.load_id == row.load_id, loads.c.status == "running")
                .values(status="abandoned", error=f"abandoned: {reason}", finished_at=now)
            ).rowcount
        if n:
            done.append(row.load_id)
    return done


@contextlib.contextmanager
def heartbeat(engine: sa.Engine, load_id: str, every: float | None = None) -> Iterator[None]:
    """Keep a running row's heartbeat fresh while the block runs (Postgres only; see LEASE_VAR)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    every = every or max(1.0, lease_seconds() / 5)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                with engine.begin() as conn:
                    conn.execute(
                        loads.update()
                        .where(loads.c.load_id == load_id, loads.c.status == "running")
                        .values(heartbeat_at=utcnow())
                    )
            except sa.exc.SQLAlchemyError:
                pass  # the load itself will notice an unreachable warehouse

    thread = threading.Thread(target=beat, name=f"heartbeat-{load_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def record(engine: sa.Engine, report: LoadReport) -> None:
    """One finished ledger row for a load decided without reading the file (a duplicate, a refused entry)."""
    with engine.begin() as conn:
        start(conn, report)
        finish(conn, report)


def finish(conn: sa.Connection, report: LoadReport) -> None:
    report.finished_at = utcnow()
    report.duration_ms = int((report.finished_at - report.started_at).total_seconds() * 1000)
    row = report.ledger_row()
    row.pop("load_id")
    conn.execute(loads.update().where(loads.c.load_id == report.load_id).values(**row))
    release(report.load_id)


def failed_attempts(conn: sa.Connection, system: str, entity: str, content_hash: str) -> list[Any]:
    """Failed or abandoned loads of this content (oldest first): the retry history of a file."""
    return list(
        conn.execute(
            sa.select(loads.c.load_id, loads.c.status, loads.c.error, loads.c.started_at, loads.c.finished_at)
            .where(
                loads.c.source_system == system,
                loads.c.entity == entity,
                loads.c.content_hash == content_hash,
                loads.c.status.in_(("failed", "abandoned")),
            )
            .order_by(loads.c.started_at)
        )
    )


def succeeded_load_for(conn: sa.Connection, system: str, entity: str, content_hash: str) -> str | None:
    """The load id that already loaded this exact content for this entity, if any."""
    return conn.execute(
        sa.select(loads.c.load_id)
        .where(
            loads.c.source_system == system,
            loads.c.entity == entity,
            loads.c.content_hash == content_hash,
            loads.c.status == "succeeded",
        )
        .limit(1)
    ).scalar_one_or_none()
