"""One erasure run (``Erasure``: what was erased per store, the files re-written) and its audit row in
``privacy_erasures``, which is also the suppression list (``privacy.suppress``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.erasure.files import FileResult
from integration_assets.privacy.subjects import Subject
from integration_assets.warehouse.schema import privacy_erasures


def utcnow() -> datetime:
    return datetime.now(UTC)


class ErasureUnavailable(RuntimeError):
    """A store the erasure needs is unreachable right now; nothing was erased, retry later."""


@dataclass
class Erasure:
    """One erasure run: what was erased per store (counts), the files re-written, and (in memory only) the
    personal values found, to look for copies of them."""

    subject: Subject
    via: str
    ref: str | None
    requested_at: datetime
    dry_run: bool = False
    id: int | None = None
    status: str = "running"
    stores: Counter[str] = field(default_factory=Counter)
    files: list[FileResult] = field(default_factory=list)
    also_found: Counter[str] = field(default_factory=Counter)
    values: set[str] = field(default_factory=set, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The report (and the audit row's content): ids, counts, paths and hashes; no personal value."""
        return {
            "erasure_id": self.id,
            "source_system": self.subject.system,
            "entity": self.subject.table,
            "source_id": self.subject.source_id,
            "requested_via": self.via,
            "request_ref": self.ref,
            "requested_at": self.requested_at.isoformat(),
            "status": self.status,
            "dry_run": self.dry_run,
            "stores": dict(sorted(self.stores.items())),
            "files": [f.as_dict() for f in self.files if f.changed],
            # Same values in tables of other records or systems: counted, not changed (docs/PRIVACY.md).
            "also_found": dict(sorted(self.also_found.items())),
        }


def erasure_note(e: Erasure) -> str:
    return f"GDPR erasure {e.id}"


def summary(e: Erasure) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(e.stores.items())) or "nothing found"


def save(conn: sa.Connection, e: Erasure, error: str | None = None) -> None:
    if e.dry_run or e.id is None:
        return
    doc = e.as_dict()
    conn.execute(
        privacy_erasures.update()
        .where(privacy_erasures.c.id == e.id)
        .values(
            status=e.status,
            stores=json.dumps(
                {**doc["stores"], **({"also_found": doc["also_found"]} if e.also_found else {})},
                sort_keys=True,
            ),
            files=json.dumps(doc["files"]),
            error=error,
            finished_at=utcnow() if e.status == "done" else None,
        )
    )


def start(conn: sa.Connection, e: Erasure, now: datetime) -> int:
    """The erasure's audit row, ``running`` (from now on the subject is on the suppression list); its id."""
    s = e.subject
    stmt = (
        privacy_erasures.insert()
        .values(
            source_system=s.system,
            entity=s.table,
            source_id=s.source_id,
            requested_via=e.via,
            request_ref=(e.ref or "")[:255] or None,
            requested_at=e.requested_at,
            started_at=now,
            status="running",
        )
        .returning(privacy_erasures.c.id)
    )
    return int(conn.execute(stmt).scalar_one())


def claim_file_phase(conn: sa.Connection, erasure_id: int, *, now: datetime, timeout: timedelta) -> bool:
    """Take the file phase of an erasure (status ``finishing``; ``finished_at`` holds the claim time until it
    is done): waiting for it (``warehouse_done``), or claimed longer than ``timeout`` ago by a process that
    died. False when someone else holds it or it is finished."""
    t = privacy_erasures
    claimed = conn.execute(
        t.update()
        .where(
            t.c.id == erasure_id,
            sa.or_(
                t.c.status == "warehouse_done",
                sa.and_(t.c.status == "finishing", t.c.finished_at < now - timeout),
            ),
        )
        .values(status="finishing", finished_at=now)
    ).rowcount
    return claimed == 1
