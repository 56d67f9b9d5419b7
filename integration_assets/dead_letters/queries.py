"""Reading the ``dead_letters`` table: filters, rows, one dead letter with its audit trail, counts. Every write
and status change is in ``store.py``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import sqlalchemy as sa

from integration_assets.errors import TerminalError
from integration_assets.warehouse.schema import dead_letter_actions, dead_letters

Status = Literal["pending", "replayed", "discarded"]
STATUSES: tuple[Status, ...] = get_args(Status)


class DeadLetterError(TerminalError):
    """A dead-letter action that cannot be done (unknown id, wrong status)."""


def status_of(text: str | None) -> Status | None:
    """A status given as text (config, CLI); empty or None means any status."""
    if not text:
        return None
    for status in STATUSES:
        if status == text:
            return status
    raise DeadLetterError(f"unknown dead-letter status {text!r}; one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class Filter:
    ids: tuple[int, ...] = ()
    status: Status | None = "pending"
    source: str | None = None
    entity: str | None = None
    stage: str | None = None
    check: str | None = None  # prefix match on check_name
    reason: str | None = None  # substring match on reason
    check_like: str | None = None  # SQL LIKE pattern on check_name (internal use)
    limit: int | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        c = dead_letters.c
        conds: list[sa.ColumnElement[bool]] = []
        if self.ids:
            conds.append(c.id.in_(self.ids))
        if self.status:
            conds.append(c.status == self.status)
        if self.source:
            conds.append(c.source_system == self.source)
        if self.entity:
            conds.append(c.entity == self.entity)
        if self.stage:
            conds.append(c.stage == self.stage)
        if self.check:
            conds.append(c.check_name.startswith(self.check, autoescape=True))
        if self.reason:
            conds.append(c.reason.contains(self.reason, autoescape=True))
        if self.check_like:
            conds.append(c.check_name.like(self.check_like))
        return conds


def select(conn: sa.Connection, flt: Filter, columns: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    stmt = sa.select(*(columns or [dead_letters])).where(*flt.where()).order_by(dead_letters.c.id)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def get(conn: sa.Connection, dl_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(dead_letters).where(dead_letters.c.id == dl_id)).one_or_none()
    if row is None:
        raise DeadLetterError(f"no dead letter with id={dl_id}")
    out = dict(row._mapping)
    out["actions"] = [
        dict(a._mapping)
        for a in conn.execute(
            sa.select(dead_letter_actions)
            .where(dead_letter_actions.c.dead_letter_id == dl_id)
            .order_by(dead_letter_actions.c.id)
        )
    ]
    return out


def counts(conn: sa.Connection) -> list[dict[str, Any]]:
    """Pending/replayed/discarded per source and entity, with the oldest pending first_seen."""
    c = dead_letters.c
    stmt = sa.select(
        c.source_system,
        c.entity,
        c.status,
        sa.func.count().label("n"),
        sa.func.min(c.first_seen).label("oldest"),
    ).group_by(c.source_system, c.entity, c.status)
    return [dict(r._mapping) for r in conn.execute(stmt)]


SETTLED: tuple[Status, ...] = ("replayed", "discarded")


def settled_before(cutoff: datetime) -> sa.ColumnElement[bool]:
    """Settled (replayed or discarded) before ``cutoff`` and not seen since: past retention. ``last_seen`` too,
    because a settled record that failed again recently is still of interest."""
    c = dead_letters.c
    return sa.and_(c.status.in_(SETTLED), c.resolved_at < cutoff, c.last_seen < cutoff)


def count_settled_before(conn: sa.Connection, cutoff: datetime) -> int:
    """How many dead letters ``store.prune_settled`` would delete (a retention dry run)."""
    stmt = sa.select(sa.func.count()).select_from(dead_letters).where(settled_before(cutoff))
    return int(conn.execute(stmt).scalar_one())
