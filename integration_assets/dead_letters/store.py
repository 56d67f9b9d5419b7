"""The one owner of the ``dead_letters`` table and its audit trail ``dead_letter_actions``.

Rows, whole files and events are all written here, and every status change happens here. A dead letter is
a small state machine (``Status``)::

    pending ──replay──▶ replayed ──fails again──▶ pending
       └────discard / erase──▶ discarded (stays discarded; last_seen still moves)

One row per bad thing, keyed by its fingerprint: seeing it again adds its attempts, moves ``last_seen`` and
keeps the latest reason. Every decision (replay, discard) is written to ``dead_letter_actions`` with who,
when and why.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from integration_assets.dead_letters.queries import DeadLetterError, Filter, select, settled_before
from integration_assets.privacy.suppress import ERASED_EARLIER, erased_dead_letters
from integration_assets.warehouse.ledger import utcnow
from integration_assets.warehouse.schema import dead_letter_actions, dead_letters

# Reasons are stored and shown to operators; a stack trace belongs in the logs (same cap as the queue's).
MAX_REASON_CHARS = 2000
_CHUNK = 1000


def actor() -> str:
    """Who acts, for the audit trail: the OS user running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


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


# -- writing: rows, files and events -----------------------------------------------------------------------
def row_fingerprint(system: str, entity: str, raw: Any) -> str:
    """Identity of a bad record or file: the same one seen again updates its dead letter instead of adding one."""
    if isinstance(raw, str) and raw.startswith("{"):
        try:
            raw = json.loads(raw)  # JSON text and dicts of the same record must give the same identity
        except ValueError:
            pass
    body = raw if isinstance(raw, str) else json.dumps(raw, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(f"{system}\x1f{entity}\x1f{body}".encode("utf-8", "surrogatepass")).hexdigest()


def event_fingerprint(source: str, message_id: str) -> str:
    """One dead-letter row per event: seeing the same event fail again updates that row."""
    return hashlib.sha256(f"event\x1f{source}\x1f{message_id}".encode()).hexdigest()


class FailedEvent(Protocol):
    """What the store records of a failed event (``queue.QueueDeadLetter`` has it; the store imports no
    queue, so any object with these fields fits)."""

    @property
    def source(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...
    @property
    def received_at(self) -> datetime | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def check_name(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def details(self) -> Mapping[str, Any]: ...


_ROW_DEFAULTS: dict[str, Any] = {
    k: None
    for k in (
        "natural_key",
        "column_name",
        "offending_value",
        "errors",
        "raw_record",
        "headers",
        "contract_version",
        "file_name",
        "position",
        "load_id",
    )
}
# What a second sighting refreshes. A row's raw record is its identity (the fingerprint hashes it); an
# event's payload and headers are the latest delivery's.
_ROW_REFRESH = (
    "stage",
    "check_name",
    "reason",
    "column_name",
    "offending_value",
    "errors",
    "contract_version",
    "load_id",
    "file_name",
    "position",
)
_EVENT_REFRESH = ("entity", "check_name", "reason", "errors", "raw_record", "headers")


def write_row_dead_letters(conn: sa.Connection, rows: Sequence[Mapping[str, Any]], /) -> None:
    """Dead-letter bad records and rejected files (stages file | parse | map | validate | load), in the
    caller's transaction. Each row needs ``fingerprint`` (``row_fingerprint``), ``source_system``,
    ``entity``, ``stage``, ``check_name`` and ``reason``; the other columns are optional."""
    _upsert(conn, [{"attempts": 1, **_ROW_DEFAULTS, **r} for r in rows], _ROW_REFRESH)


def write_event_dead_letters(conn: sa.Connection, items: Sequence[FailedEvent], /) -> None:
    """Dead-letter events (stage ``event``) in the caller's transaction: the one that deletes the queue row
    or records the failure, so an event is always in exactly one of the two places."""
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
                "reason": _truncate(item.reason),
                "errors": json.dumps(errors, default=str, sort_keys=True),
                # Verified JSON before it was queued, so UTF-8 text; a broker's DLQ may hold anything.
                "raw_record": item.body.decode("utf-8", errors="backslashreplace"),
                "headers": json.dumps(headers, default=str, sort_keys=True),
                "attempts": max(1, item.attempts),
            }
        )
    _upsert(conn, rows, _EVENT_REFRESH)


def outbound_fingerprint(ledger_key: str) -> str:
    """One dead-letter row per outbound write (``<step>:<chain>[:<sub>]``): failing again updates it."""
    return hashlib.sha256(f"outbound\x1f{ledger_key}".encode()).hexdigest()


_OUTBOUND_REFRESH = (
    "stage",
    "source_system",
    "check_name",
    "reason",
    "column_name",
    "errors",
    "raw_record",
    "headers",
    "contract_version",
)


def write_outbound_dead_letters(conn: sa.Connection, items: Sequence[Mapping[str, Any]], /) -> None:
    """Dead-letter outbound writes (stage ``outbound``) in the caller's transaction: the one that settles
    the write's ledger row. Each item: ``ledger_key``, ``source_system`` (the target system), ``entity``
    (the step), ``natural_key`` (the chain id), ``check_name``, ``reason`` (the target's message, naming the
    field), ``column_name`` (the field), ``contract_version``, ``raw_record`` (the outbox message's JSON:
    ids only), ``attempts`` and ``details`` (ids: outbox key, topic)."""
    rows = []
    for item in items:
        details = dict(item.get("details") or {})
        errors = [
            {
                "check": item["check_name"],
                "reason": _truncate(item["reason"]),
                "field": item.get("column_name"),
                "attempts": item.get("attempts", 1),
                **details,
            }
        ]
        rows.append(
            {
                **_ROW_DEFAULTS,
                "fingerprint": outbound_fingerprint(item["ledger_key"]),
                "source_system": str(item["source_system"])[:32],
                "entity": str(item["entity"])[:64],
                "natural_key": str(item["natural_key"])[:255],
                "stage": "outbound",
                "check_name": str(item["check_name"])[:128],
                "reason": _truncate(item["reason"]),
                "column_name": item.get("column_name"),
                "errors": json.dumps(errors, default=str, sort_keys=True),
                "raw_record": item["raw_record"],
                "headers": json.dumps(
                    {"ledger_key": item["ledger_key"], **details}, default=str, sort_keys=True
                ),
                "contract_version": item.get("contract_version"),
                "attempts": max(1, int(item.get("attempts") or 1)),
            }
        )
    _upsert(conn, rows, _OUTBOUND_REFRESH)


def _truncate(reason: str) -> str:
    reason = str(reason)
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _upsert(conn: sa.Connection, rows: Sequence[dict[str, Any]], refresh: Sequence[str]) -> None:
    """The one upsert and its status rule: a thing seen again adds its attempts, moves last_seen and keeps
    the latest reason; a replayed one goes back to pending (the replay did not fix it); a discarded one stays
    discarded (someone decided it does not matter)."""
    if not rows:
        return
    now = utcnow()
    # Postgres text cannot hold NUL: keep it visible as the JSON escape instead of failing the whole write.
    rows = [
        {
            **{k: v.replace("\x00", "\\u0000") if isinstance(v, str) else v for k, v in r.items()},
            "status": "pending",
            "first_seen": now,
            "last_seen": now,
        }
        for r in rows
    ]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    c = dead_letters.c
    for start in range(0, len(rows), _CHUNK):
        stmt = insert(dead_letters)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[c.fingerprint],
            set_={
                **{k: ex[k] for k in refresh},
                "attempts": c.attempts + ex.attempts,
                "last_seen": ex.last_seen,
                "status": sa.case((c.status == "discarded", "discarded"), else_="pending"),
            },
        )
        conn.execute(stmt, rows[start : start + _CHUNK])  # executemany: one statement, many parameter sets
    # GDPR: no payload of an erased record, not even for a moment
    for dl_id, subject in erased_dead_letters(conn, [str(r["fingerprint"]) for r in rows]):
        erase_payload(conn, dl_id, source_id=subject.source_id, note=ERASED_EARLIER, now=now)


# -- status transitions ------------------------------------------------------------------------------------
def mark_replayed(
    conn: sa.Connection,
    ids: Sequence[int],
    note: str,
    *,
    load_id: str | None = None,
    count_attempt: bool = True,
    only_pending: bool = False,
) -> None:
    """pending → replayed: the record, file or event went through again (``note`` says how and by whom).
    ``count_attempt`` adds the replay to ``attempts`` (a load did it); an event re-enqueued is not yet an
    attempt (the drain counts it). ``only_pending`` leaves rows another actor settled meanwhile."""
    if not ids:
        return
    c = dead_letters.c
    values: dict[str, Any] = {"status": "replayed", "resolved_at": utcnow(), "resolution_note": note}
    if count_attempt:
        values["attempts"] = c.attempts + 1
    if load_id is not None:
        values["load_id"] = load_id
    where: list[sa.ColumnElement[bool]] = [c.id.in_(list(ids))]
    if only_pending:
        where.append(c.status == "pending")
    conn.execute(dead_letters.update().where(*where).values(**values))


def mark_still_failing(conn: sa.Connection, dl_id: int, reason: str) -> None:
    """A replay that failed again: one more attempt, seen now, with the latest reason; the status stays."""
    conn.execute(
        dead_letters.update()
        .where(dead_letters.c.id == dl_id)
        .values(attempts=dead_letters.c.attempts + 1, last_seen=utcnow(), reason=reason)
    )


def erase_payload(
    conn: sa.Connection, dl_id: int, *, source_id: str, note: str, now: datetime | None = None
) -> bool:
    """→ discarded, payload dropped: the record this dead letter holds was erased (GDPR). Returns False when
    the dead letter no longer exists."""
    c = dead_letters.c
    row = conn.execute(sa.select(c.stage, c.check_name).where(c.id == dl_id)).first()
    if row is None:
        return False
    extra: dict[str, Any] = {}
    if row.stage != "event":
        # A row's fingerprint hashes the record itself (personal data, pseudonymised): replaced. The same
        # record quarantined again gets a new dead letter, erased on arrival.
        extra["fingerprint"] = hashlib.sha256(f"erased\x1f{dl_id}".encode()).hexdigest()
    conn.execute(
        dead_letters.update()
        .where(c.id == dl_id)
        .values(
            **extra,
            raw_record=json.dumps({"erased": note, "source_id": source_id}),
            offending_value=None,
            errors=json.dumps([{"stage": row.stage, "check": row.check_name, "erased": note}]),
            reason=f"{row.check_name}: payload erased ({note})",
            status="discarded",
            resolved_at=now or utcnow(),
            resolution_note=note,
        )
    )
    return True


def prune_settled(conn: sa.Connection, cutoff: datetime, *, limit: int) -> int:
    """Delete up to ``limit`` dead letters settled before ``cutoff`` and not seen since (retention; their
    audit trail stays). Returns how many were deleted."""
    batch = sa.select(dead_letters.c.id).where(settled_before(cutoff)).limit(limit)
    return int(conn.execute(sa.delete(dead_letters).where(dead_letters.c.id.in_(batch))).rowcount)


def replace_texts(
    conn: sa.Connection,
    table: Literal["dead_letters", "dead_letter_actions"],
    row_id: int,
    changes: Mapping[str, str],
) -> None:
    """Overwrite text columns of one row: the GDPR erasure replaces copies of a person's values."""
    t = dead_letters if table == "dead_letters" else dead_letter_actions
    conn.execute(t.update().where(t.c.id == row_id).values(dict(changes)))
