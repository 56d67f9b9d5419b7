"""Phase 1 of an erasure, in the warehouse and in one transaction (see ``erasure.erase``): the canonical
row's personal columns, the subject's dead letters, its events waiting in the SQL queue, and every copy of
one of its values in any other text column."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from integration_assets.dead_letters.store import erase_payload, replace_texts
from integration_assets.erasure.audit import Erasure, erasure_note, save, start, summary, utcnow
from integration_assets.erasure.queue import erase_queued_events
from integration_assets.privacy.subjects import (
    Subject,
    distinctive,
    full_name,
    personal_columns,
    redact_text,
    source_fields,
    value_forms,
    value_patterns,
)
from integration_assets.privacy.suppress import merge_lock, subject_dead_letters
from integration_assets.warehouse.schema import (
    CANONICAL_TABLES,
    dead_letter_actions,
    dead_letters,
    metadata,
    privacy_erasures,
)

log = logging.getLogger(__name__)

DEAD_LETTER_TABLES: dict[str, Literal["dead_letters", "dead_letter_actions"]] = {
    dead_letters.name: "dead_letters",
    dead_letter_actions.name: "dead_letter_actions",
}


def _erase_row(conn: sa.Connection, e: Erasure, now: datetime) -> None:
    t = CANONICAL_TABLES[e.subject.table]
    cols = personal_columns(e.subject.table)
    where = sa.and_(t.c.source_system == e.subject.system, t.c.source_id == e.subject.source_id)
    row = conn.execute(sa.select(*(t.c[c] for c in cols)).where(where)).first()
    if row is None:
        e.stores[e.subject.table] += 0
        return
    e.values |= {v for v in row if isinstance(v, str)}
    e.values |= full_name(row._mapping.get("first_name"), row._mapping.get("last_name"))
    e.stores[e.subject.table] += int(any(v is not None for v in row))  # an erased row again counts 0
    if not e.dry_run:
        conn.execute(
            t.update()
            .where(where)
            .values({**{c: None for c in cols}, "erased_at": sa.func.coalesce(t.c.erased_at, now)})
        )


def _text_columns(table: sa.Table) -> list[sa.Column]:
    return [c for c in table.columns if isinstance(c.type, sa.String | sa.Text)]


def scrub_values(conn: sa.Connection, e: Erasure, values: Iterable[str], *, canonical: bool = False) -> None:
    """Replace copies of ``values`` in every text column of every non-canonical table. ``canonical``: count
    the matches in the canonical tables instead (other records, other systems: not changed, reported as
    ``also_found``; a scan of whole tables, so it runs after the drain's transaction)."""
    values = distinctive(values)  # a first name alone would hit other people's rows
    patterns = value_patterns(values)
    if not patterns:
        return
    needles = sorted({f.lower() for f in value_forms(values)})
    existing = set(sa.inspect(conn).get_table_names())
    canonical_tables = set(CANONICAL_TABLES)
    for table in metadata.sorted_tables:
        if table.name not in existing or table.name == privacy_erasures.name:
            continue
        cols = _text_columns(table)
        if not cols:
            continue
        hit = sa.or_(
            *(sa.func.lower(c).contains(n.lower(), autoescape=True) for c in cols for n in needles if n)
        )
        if (table.name in canonical_tables) != canonical:
            continue
        if canonical:
            t = table
            cond = hit
            if table.name == e.subject.table:
                cond = sa.and_(
                    hit,
                    sa.not_(
                        sa.and_(t.c.source_system == e.subject.system, t.c.source_id == e.subject.source_id)
                    ),
                )
            n = conn.execute(sa.select(sa.func.count()).select_from(t).where(cond)).scalar_one()
            if n:
                e.also_found[table.name] += int(n)
            continue
        pk = list(table.primary_key.columns)
        if not pk:
            continue
        for row in conn.execute(sa.select(*pk, *cols).where(hit)).all():
            changes: dict[str, Any] = {}
            for c in cols:
                value = row._mapping[c.name]
                if isinstance(value, str):
                    new, n = redact_text(value, patterns)
                    if n:
                        changes[c.name] = new
            if not changes:
                continue
            e.stores[f"{table.name}_values"] += 1
            if e.dry_run:
                continue
            if table.name in DEAD_LETTER_TABLES:
                # The dead-letter store is the only writer of its tables.
                replace_texts(conn, DEAD_LETTER_TABLES[table.name], int(row._mapping["id"]), changes)
            else:
                conn.execute(table.update().where(*(k == row._mapping[k.name] for k in pk)).values(changes))


def erase_warehouse(
    conn: sa.Connection,
    subject: Subject,
    *,
    via: str,
    ref: str | None,
    requested_at: datetime | None = None,
    dry_run: bool = False,
    skip_message_ids: Iterable[str] = (),
) -> Erasure:
    """Phase 1 in the caller's transaction (see the module docstring)."""
    now = utcnow()
    e = Erasure(subject, via, ref, requested_at or now, dry_run=dry_run)
    for store in (
        subject.table,
        "dead_letters",
        "event_queue",
        "archive_files",
        "archive_records",
        "rejected_files",
        "rejected_records",
        "alert_log_values",
    ):
        e.stores[store] += 0  # reported even when nothing was there
    fields = source_fields(subject.system, subject.table)
    sqlite = conn.dialect.name == "sqlite" and not dry_run
    if sqlite:
        # Overwrite what this transaction deletes or rewrites with zeros instead of leaving it in free space.
        conn.exec_driver_sql("PRAGMA secure_delete = ON")
    if not dry_run:
        merge_lock(conn, subject.table)
        e.id = start(conn, e, now)
    _erase_row(conn, e, now)
    found = subject_dead_letters(conn, [subject], fields)
    for _, _, values in found:
        e.values |= values
    e.stores["dead_letters"] += len(found)
    if not dry_run:
        for dl_id, held, _ in found:
            erase_payload(conn, dl_id, source_id=held.source_id, note=erasure_note(e), now=now)
    erase_queued_events(conn, e, set(skip_message_ids), fields)
    scrub_values(conn, e, e.values)
    e.status = "warehouse_done"
    save(conn, e)
    if sqlite:
        conn.exec_driver_sql("PRAGMA secure_delete = OFF")
    log.info(
        "erasure %s of %s %s %s: warehouse done (%s)",
        e.id,
        subject.system,
        subject.table,
        subject.source_id,
        summary(e),
    )
    return e
