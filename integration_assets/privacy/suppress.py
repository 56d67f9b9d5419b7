"""Erased stays erased: later loads, events and dead letters never bring an erased record's personal data
back (docs/PRIVACY.md, "Later loads").

The suppression list is ``privacy_erasures`` itself. Two hooks, each one query when nothing was ever erased:

- ``keep_erased_staged``: the canonical writer calls it on the staged rows right before every merge. Rows of
  erased records lose their personal columns and carry ``erased_at``; the rest of the row (lifecycle stage,
  company, timestamps) loads as usual, newer wins. On Postgres it first takes the table's merge lock (the
  erasure takes it too), so an erasure committing while a load runs cannot be overtaken by that load.
  A batch property change read ``FOR UPDATE`` goes through the same merge, so an event older or newer than
  the erasure cannot re-fill a field either.
- ``keep_dead_letters_erased``: the dead-letter writers call it with what they just wrote; a quarantined
  record or a rejected event of an erased record has its payload erased at once, in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse.schema import dead_letters, privacy_erasures

log = logging.getLogger(__name__)


def _any_erased(conn: sa.Connection, table: str | None = None) -> bool:
    stmt = sa.select(privacy_erasures.c.id).limit(1)
    if table is not None:
        stmt = stmt.where(privacy_erasures.c.entity == table)
    return conn.execute(stmt).first() is not None


def keep_erased_staged(conn: sa.Connection, table: str, stage: str, *, lock: bool = True) -> int:
    """Null the personal columns of staged rows (temporary table ``stage``) of erased records of ``table``.
    Returns how many staged rows were suppressed."""
    from integration_assets.privacy.subjects import ERASABLE, personal_columns

    if not any(t == table for _, t in ERASABLE) or not _any_erased(conn, table):
        return 0
    if lock and conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('integration_assets.merge'), hashtext(:t))"),
            {"t": table},
        )
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


def keep_dead_letters_erased(conn: sa.Connection, fingerprints: Iterable[str]) -> int:
    """Erase the payload of the dead letters just written (by fingerprint) that hold an erased record."""
    from integration_assets.privacy.erase import (
        erased_subjects,
        scrub_dead_letters,
        subject_dead_letters,
        utcnow,
    )
    from integration_assets.privacy.subjects import source_fields

    prints = sorted(set(fingerprints))
    if not prints or not _any_erased(conn):
        return 0
    ids = [
        int(i)
        for start in range(0, len(prints), 500)
        for i in conn.scalars(
            sa.select(dead_letters.c.id).where(dead_letters.c.fingerprint.in_(prints[start : start + 500]))
        )
    ]
    n = 0
    for (system, table), subjects in erased_subjects(conn).items():
        found = subject_dead_letters(conn, subjects, source_fields(system, table), ids=ids)
        n += scrub_dead_letters(conn, found, "GDPR erasure (record erased earlier)", utcnow())
    if n:
        log.info("%d dead letter(s) of erased records: payload erased on arrival", n)
    return n


def redact_erased_file(path: Path, system: str, entity: str, settings: Settings | None = None) -> int:
    """Remove the records of erased records from a file just archived or rejected (an export that still
    holds an erased contact, or the original export dropped again). Returns the records removed."""
    from integration_assets.warehouse.db import get_engine

    if not path.is_file():
        return 0
    settings = settings or get_settings()
    try:
        with get_engine(settings.warehouse_url).connect() as conn:
            # Checked before the contracts are imported (pandas, pandera): archiving a re-sent export stays
            # cheap while nothing was ever erased (0.5 s → 1.4 s per sync and +100 MiB otherwise, measured).
            if not _any_erased(conn):
                return 0
            from integration_assets.privacy.erase import erased_subjects

            erased = erased_subjects(conn)
    except sa.exc.SQLAlchemyError as exc:  # the file is where it belongs; `privacy erase` can redo it
        log.warning(
            "%s: erased records not checked, warehouse unavailable (%s)", path.name, type(exc).__name__
        )
        return 0
    from integration_assets.contracts.spec import all_contracts
    from integration_assets.privacy.files import FileRedactor
    from integration_assets.privacy.subjects import ERASABLE, source_fields

    tables = {c.target for c in all_contracts() if c.system == system and c.entity == entity}
    tables = {t for t in tables if (system, t) in ERASABLE}
    removed = 0
    for table in sorted(tables):
        subjects = erased.get((system, table), [])
        if subjects:
            redactor = FileRedactor(subjects, source_fields(system, table), settings.fallback_encoding)
            removed += redactor.redact(path, "archive", path.parent, by_id=True, dry_run=False).records
    if removed:
        log.info("%s: %d record(s) of erased %s %s removed", path.name, removed, system, entity)
    return removed
