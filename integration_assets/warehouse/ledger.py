"""The loads ledger: one row per load attempt, with its counts, status and timings."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from integration_assets.warehouse.schema import loads


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        import json

        return {
            "load_id": self.load_id, "source_system": self.source_system, "entity": self.entity,
            "target_table": self.target_table, "kind": self.kind, "file_name": self.file_name,
            "content_hash": self.content_hash, "file_bytes": self.file_bytes, "contract": self.contract,
            "status": self.status, "rows_read": self.rows_read, "rows_inserted": self.rows_inserted,
            "rows_updated": self.rows_updated, "rows_unchanged": self.rows_unchanged,
            "rows_duplicate": self.rows_duplicate, "rows_quarantined": self.rows_quarantined,
            "drift": json.dumps(self.drift) if self.drift else None,
            "error": (f"{self.reason_code}: {self.error}" if self.reason_code else self.error),
            "run_id": self.run_id, "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
        }


def start(conn: sa.Connection, report: LoadReport) -> None:
    conn.execute(loads.insert().values(**report.ledger_row()))


def finish(conn: sa.Connection, report: LoadReport) -> None:
    report.finished_at = utcnow()
    report.duration_ms = int((report.finished_at - report.started_at).total_seconds() * 1000)
    row = report.ledger_row()
    row.pop("load_id")
    conn.execute(loads.update().where(loads.c.load_id == report.load_id).values(**row))


def succeeded_load_for(conn: sa.Connection, system: str, entity: str, content_hash: str) -> str | None:
    """The load id that already loaded this exact content for this entity, if any."""
    return conn.execute(
        sa.select(loads.c.load_id).where(
            loads.c.source_system == system, loads.c.entity == entity, loads.c.content_hash == content_hash,
            loads.c.status == "succeeded",
        ).limit(1)
    ).scalar_one_or_none()
