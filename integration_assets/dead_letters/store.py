"""Reading and deciding on dead letters: list, show, discard, export.

Dead letters are a state machine: ``pending → replayed | discarded`` (a replayed record that fails again
goes back to pending). Every decision is written to ``dead_letter_actions`` with who, when and why.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from integration_assets.errors import TerminalError
from integration_assets.warehouse.schema import dead_letter_actions, dead_letters
from integration_assets.warehouse.writer import utcnow

STATUSES = ("pending", "replayed", "discarded")
# OWASP "CSV injection": cells starting with these are read as formulas by spreadsheet programs.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_EMAIL = re.compile(r"[^@\s'\"]+@[^@\s'\"]+\.[A-Za-z]{2,}")
_LONG_DIGITS = re.compile(r"\b(?:\d[ -]?){9,19}\b")


class DeadLetterError(TerminalError):
    """A dead-letter action that cannot be done (unknown id, wrong status)."""


def actor() -> str:
    """Who acts, for the audit trail: the OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


@dataclass(frozen=True)
class Filter:
    ids: tuple[int, ...] = ()
    status: str | None = "pending"
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


def audit(
    conn: sa.Connection,
    ids: Sequence[int],
    action: str,
    who: str,
    outcome: str,
    *,
    contract_version: str | None = None,
    detail: str | None = None,
    run_id: str | None = None,
) -> None:
    if not ids:
        return
    now = utcnow()
    conn.execute(
        dead_letter_actions.insert(),
        [
            {
                "dead_letter_id": i,
                "action": action,
                "actor": who,
                "contract_version": contract_version,
                "outcome": outcome,
                "detail": detail,
                "run_id": run_id,
                "at": now,
            }
            for i in ids
        ],
    )


def discard(conn: sa.Connection, ids: Sequence[int], note: str, who: str | None = None) -> int:
    """Mark pending dead letters as discarded (a decision that they need no load), with a note."""
    if not note.strip():
        raise DeadLetterError("a discard needs a note saying why")
    who = who or actor()
    rows = select(conn, Filter(ids=tuple(ids), status=None), [dead_letters.c.id, dead_letters.c.status])
    found = {r["id"]: r["status"] for r in rows}
    missing = sorted(set(ids) - set(found))
    if missing:
        raise DeadLetterError(f"no dead letters with ids {missing}")
    todo = [i for i, s in found.items() if s == "pending"]
    if todo:
        conn.execute(
            dead_letters.update()
            .where(dead_letters.c.id.in_(todo))
            .values(status="discarded", resolved_at=utcnow(), resolution_note=note)
        )
        audit(conn, todo, "discard", who, "discarded", detail=note)
    return len(todo)


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


# -- export -----------------------------------------------------------------------------------------------
EXPORT_COLUMNS = (
    "id",
    "status",
    "source_system",
    "entity",
    "natural_key",
    "stage",
    "check_name",
    "reason",
    "column_name",
    "offending_value",
    "contract_version",
    "file_name",
    "position",
    "attempts",
    "first_seen",
    "last_seen",
    "resolution_note",
)


def neutralise_cell(value: Any) -> str:
    """Text that a spreadsheet will not execute: formula-like cells get a leading apostrophe."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _pii_columns() -> set[str]:
    from integration_assets.contracts.spec import all_contracts

    cols: set[str] = set()
    for c in all_contracts():
        cols |= c.pii_columns
    return cols


def scrub(text: str | None, column: str | None, pii: set[str]) -> str | None:
    """No PII in exports: values of PII columns are withheld; emails and card-like numbers are masked anywhere."""
    if text is None:
        return None
    if column and column in pii:
        return "<withheld: PII column>"
    text = _EMAIL.sub("<email>", text)
    return _LONG_DIGITS.sub("<number>", text)


def export_csv(conn: sa.Connection, flt: Filter) -> str:
    """Dead letters as CSV for review outside the tool: no raw payloads, no PII, formula cells neutralised."""
    pii = _pii_columns()
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in select(conn, flt):
        col = r.get("column_name")
        r = dict(r)
        r["offending_value"] = scrub(r.get("offending_value"), col, pii)
        r["reason"] = scrub(r.get("reason"), col, pii)
        r["natural_key"] = scrub(r.get("natural_key"), None, pii)
        w.writerow([neutralise_cell(r.get(k)) for k in EXPORT_COLUMNS])
    return buf.getvalue()


def as_json_row(r: dict[str, Any], with_raw: bool = False) -> dict[str, Any]:
    out = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in r.items()
        if k != "raw_record" or with_raw
    }
    for k in ("errors", "headers"):
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out
