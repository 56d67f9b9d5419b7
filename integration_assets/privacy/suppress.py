"""Erased stays erased: later loads, events and dead letters never bring an erased record's personal data
back (docs/PRIVACY.md, "Later loads").

The suppression list is ``privacy_erasures`` itself. Each hook costs one query when nothing was ever erased,
and imports the contracts (pandas, pandera) only once something was:

- ``merge_keeping_erased``: every load, event batch and replay merges its staged rows through it (the
  canonical writer knows no privacy rules). Rows of erased records lose their personal columns and carry
  ``erased_at``; the rest of the row (lifecycle stage, company, timestamps) loads as usual, newer wins. On
  Postgres it first takes the table's merge lock (the erasure takes it too), so an erasure committing while
  a load runs cannot be overtaken by that load. A batch property change read ``FOR UPDATE`` goes through the
  same merge, so an event older or newer than the erasure cannot re-fill a field either.
- ``erased_dead_letters``: ``dead_letters.store`` asks it about what it just wrote; a quarantined record or
  a rejected event of an erased record has its payload erased at once, in the same transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from integration_assets.warehouse.schema import dead_letters, privacy_erasures

if TYPE_CHECKING:
    from integration_assets.privacy.subjects import SourceFields, Subject
    from integration_assets.warehouse.writer import CanonicalStage, MergeCounts

log = logging.getLogger(__name__)

# Where a dead letter of an erased record says why its payload is gone (erased on arrival).
ERASED_EARLIER = "GDPR erasure (record erased earlier)"


def any_erased(conn: sa.Connection, table: str | None = None) -> bool:
    """Was anything (of ``table``) ever erased? The cheap question every hook asks first."""
    stmt = sa.select(privacy_erasures.c.id).limit(1)
    if table is not None:
        stmt = stmt.where(privacy_erasures.c.entity == table)
    return conn.execute(stmt).first() is not None


def erased_subjects(conn: sa.Connection) -> dict[tuple[str, str], list[Subject]]:
    """Every erased record, per (source system, table)."""
    # lazy: the contracts (pandas, pandera) only once something was erased, saves 1100 ms
    from integration_assets.privacy.subjects import Subject

    out: dict[tuple[str, str], list[Subject]] = {}
    stmt = sa.select(
        privacy_erasures.c.source_system, privacy_erasures.c.entity, privacy_erasures.c.source_id
    )
    for system, table, source_id in conn.execute(stmt.distinct()):
        out.setdefault((system, table), []).append(Subject(system, table, source_id))
    return out


def merge_lock(conn: sa.Connection, table: str) -> None:
    """On Postgres, the advisory lock every merge into ``table`` holds (warehouse.writer): an erasure waits
    for a load in flight and a load after it sees the erasure (the lock is re-entrant in one transaction)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('integration_assets.merge'), hashtext(:t))"),
            {"t": table},
        )


def keep_erased_staged(conn: sa.Connection, table: str, stage: str, *, lock: bool = True) -> int:
    """Null the personal columns of staged rows (temporary table ``stage``) of erased records of ``table``.
    Returns how many staged rows were suppressed."""
    # lazy: the contracts (pandas, pandera) only once something was erased, saves 1100 ms
    from integration_assets.privacy.subjects import ERASABLE, personal_columns

    if not any(t == table for _, t in ERASABLE) or not any_erased(conn, table):
        return 0
    if lock:
        merge_lock(conn, table)
    q = conn.dialect.identifier_preparer.quote
    cols = personal_columns(table)
    same = (
        f"e.entity = :t AND e.source_system = {q(stage)}.source_system AND e.source_id = {q(stage)}.source_id"
    )
    sets = ", ".join(f"{q(c)} = NULL" for c in cols)
    n = conn.execute(
        sa.text(
            f"UPDATE {q(stage)} SET {sets}, erased_at = "
            f"(SELECT min(e.started_at) FROM privacy_erasures e WHERE {same}) "
            f"WHERE EXISTS (SELECT 1 FROM privacy_erasures e WHERE {same})"
        ),
        {"t": table},
    ).rowcount
    if n:
        log.info("%d staged %s row(s) of erased records kept erased (personal columns not loaded)", n, table)
    return int(n or 0)


def merge_keeping_erased(stage: CanonicalStage, *, lock: bool = True, tie_wins: bool = False) -> MergeCounts:
    """``stage.merge(lock=lock, tie_wins=tie_wins)`` with the staged rows of erased records kept erased first,
    in the same transaction: how loads, events and replays merge into a canonical table."""
    if stage.staged:
        keep_erased_staged(stage.conn, stage.table.name, stage.name, lock=lock)
    return stage.merge(lock=lock, tie_wins=tie_wins)


def _json(text: Any) -> Any:
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def subject_dead_letters(
    conn: sa.Connection,
    subjects: Sequence[Subject],
    fields: SourceFields,
    *,
    ids: Sequence[int] | None = None,
) -> list[tuple[int, Subject, set[str]]]:
    """Dead letters holding a record or event of one of ``subjects`` (all of one system and table), among
    ``ids`` or else among all: (id, subject, personal values)."""
    # lazy: the contracts (pandas, pandera) only once something was erased, saves 1100 ms
    from integration_assets.privacy.subjects import (
        canonical_id,
        event_id_of,
        event_values,
        mentions_id,
        record_id,
        record_values,
    )

    if not subjects:
        return []
    dl = dead_letters
    first = subjects[0]
    by_id = {s.source_id: s for s in subjects}
    stmt = sa.select(
        dl.c.id,
        dl.c.stage,
        dl.c.entity,
        dl.c.natural_key,
        dl.c.raw_record,
        dl.c.column_name,
        dl.c.offending_value,
        dl.c.resolution_note,
    ).where(dl.c.source_system == first.system)
    if ids is not None:
        stmt = stmt.where(dl.c.id.in_(list(ids)))
    else:
        stmt = stmt.where(
            sa.or_(
                *(dl.c.raw_record.contains(s.source_id) for s in subjects), dl.c.natural_key.in_(list(by_id))
            )
        )
    out = []
    for r in conn.execute(stmt):
        doc = _json(r.raw_record)
        if isinstance(doc, dict) and set(doc) == {"erased", "source_id"}:
            continue  # erased already
        values: set[str] = set()
        if r.stage == "event":
            hit = by_id.get(event_id_of(doc, first.object_type, first.object_type_id) or "")
            values = event_values(doc, fields)
        elif r.entity in fields.entities:
            hit = by_id.get(canonical_id(r.natural_key) or "") or by_id.get(record_id(doc, fields) or "")
            if hit is None and doc is None and isinstance(r.raw_record, str):
                # A line that did not parse (wrong column count, bad quoting): the id as a token of its own.
                hit = next((s for s in subjects if mentions_id(r.raw_record, s.source_id)), None)
            values = record_values(doc, fields)
            if r.column_name in fields.personal_fields and isinstance(r.offending_value, str):
                values.add(r.offending_value)
        else:
            hit = None
        if hit is not None:
            out.append((int(r.id), hit, values))
    return out


def erased_dead_letters(conn: sa.Connection, fingerprints: Iterable[str]) -> list[tuple[int, Subject]]:
    """Of the dead letters just written (by fingerprint), those holding an erased record: (id, subject).
    ``dead_letters.store`` erases their payload in the same transaction (note ``ERASED_EARLIER``)."""
    # lazy: the contracts (pandas, pandera) only once something was erased, saves 1100 ms
    from integration_assets.privacy.subjects import source_fields

    prints = sorted(set(fingerprints))
    if not prints or not any_erased(conn):
        return []
    ids = [
        int(i)
        for start in range(0, len(prints), 500)
        for i in conn.scalars(
            sa.select(dead_letters.c.id).where(dead_letters.c.fingerprint.in_(prints[start : start + 500]))
        )
    ]
    found: list[tuple[int, Subject]] = []
    for (system, table), subjects in erased_subjects(conn).items():
        for dl_id, subject, _ in subject_dead_letters(conn, subjects, source_fields(system, table), ids=ids):
            found.append((dl_id, subject))
    if found:
        log.info("%d dead letter(s) of erased records: payload erased on arrival", len(found))
    return found
