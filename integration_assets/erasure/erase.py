"""GDPR erasure of one record's personal data, everywhere the project keeps a copy (docs/PRIVACY.md).

Two phases, one audit row in ``privacy_erasures``:

1. **Warehouse** (one transaction; inside the drain's batch transaction for a ``contact.privacyDeletion``
   webhook): the canonical row's personal columns are nulled and ``erased_at`` set; the subject's dead
   letters lose their payload (raw record, offending value, findings) and are discarded with a note; the
   subject's events still waiting in the SQL queue table are deleted (the record no longer exists at the
   source: a permanent deletion is what sends privacyDeletion); every copy of one of the person's values in
   any other text column (drift samples, ledger errors, alert texts, dead-letter actions, queue errors) is
   replaced by ``[erased]``. The audit row is written in the same transaction (status ``warehouse_done``),
   so the suppression list and the erased row commit together.
2. **Files** (after the commit): archived and rejected export files are re-written without the subject's
   records (``erasure.files``), copies of the values in the alert log, rejected-file reasons and connector
   state are replaced, values found only in the files are searched for in the warehouse once more, and the
   audit row becomes ``done`` with the counts per store and the hashes of every re-written file. A crash in
   between leaves ``warehouse_done``: ``finish_pending`` (after every drain batch that erased and the first
   batch of every drain, and ``integration-assets privacy resume``) completes it. Files that cannot hold the
   subject's id or values are not parsed (a byte search first), so an archive of years costs mostly reads.

Personal values are held in memory only while an erasure runs: never logged, never stored.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.erasure.alert_log import scrub_text_file, text_stores
from integration_assets.erasure.audit import Erasure, claim_file_phase, save, summary, utcnow
from integration_assets.erasure.files import FileRedactor, FileResult, files_under
from integration_assets.erasure.queue import move_broker_dead_letters
from integration_assets.erasure.tables import erase_warehouse, scrub_values
from integration_assets.privacy.subjects import Subject, distinctive, source_fields
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse.db import begin_write, get_engine
from integration_assets.warehouse.schema import privacy_erasures

log = logging.getLogger(__name__)


# -- file phase --------------------------------------------------------------------------------------------
def erase_files(e: Erasure, settings: Settings | None = None) -> set[str]:
    """Phase 2: archives and rejected files of the subject's entity, then the small text stores. Returns the
    values found only in the files."""
    settings = settings or get_settings()
    fields = source_fields(e.subject.system, e.subject.table)
    redactor = FileRedactor([e.subject], fields, settings.fallback_encoding)
    stores = {"archive": settings.archive_dir, "rejected": settings.rejected_dir}
    targets: list[tuple[str, Path, Path, bool]] = []
    for store, root in stores.items():
        own = {root / e.subject.system / entity for entity in fields.entities}
        for folder in sorted(own):
            targets += [(store, root, p, True) for p in files_under(folder)]
        if store == "rejected":  # anything rejected may be a misplaced copy: values only
            targets += [
                (store, root, p, False)
                for p in files_under(root)
                if not any(p.is_relative_to(f) for f in own) and not p.name.endswith(".reason.json")
            ]
    known = set(e.values)
    # One pass: each file re-written with the values known so far. A distinctive value first seen in a later
    # file (another e-mail of the person) sends the files before it through a values-only pass, which a byte
    # search keeps to the files that hold it.
    results: dict[Path, FileResult] = {}
    redactor.set_values(e.values)
    used = distinctive(e.values)
    done: list[tuple[str, Path, Path]] = []
    for store, root, path, by_id in targets:
        results[path] = redactor.redact(path, store, root, by_id=by_id, dry_run=e.dry_run)
        e.values |= redactor.found
        if distinctive(e.values) - used:
            redactor.set_values(e.values)
            used = distinctive(e.values)
            for store2, root2, path2 in done:
                again = redactor.redact(path2, store2, root2, by_id=False, dry_run=e.dry_run)
                if again.values:
                    first = results[path2]
                    first.values += again.values
                    first.sha256_after = again.sha256_after
        done.append((store, root, path))
    for store, _, path, _ in targets:
        result = results[path]
        if result.changed:
            e.files.append(result)
            e.stores[f"{store}_files"] += 1
            e.stores[f"{store}_records"] += result.records
            if result.values:
                e.stores[f"{store}_values"] += result.values
    for path in text_stores(settings):
        n = scrub_text_file(path, redactor.patterns, e.dry_run)
        if n:
            e.stores["alert_log_values" if path.name.endswith(".jsonl") else "file_values"] += n
    return e.values - known


# A claim on an erasure's file phase that is older than this was left by a process that died: taken over.
CLAIM_TIMEOUT = timedelta(hours=1)


def _claim(engine: sa.Engine, erasure_id: int) -> bool:
    """Take the file phase of an erasure (status ``finishing``; ``finished_at`` holds the claim time until it
    is done), so two drains or a drain and the CLI never finish the same erasure and overwrite each other's
    counts."""
    with begin_write(engine) as conn:
        return claim_file_phase(conn, erasure_id, now=utcnow(), timeout=CLAIM_TIMEOUT)


def _checkpoint(engine: sa.Engine) -> None:
    """SQLite: copy the write-ahead log into the database file and truncate it, so the old page images that
    held the erased values are gone from disk too (a reader still open can keep a part of it; then the next
    checkpoint does). Postgres keeps old row versions until VACUUM (docs/PRIVACY.md)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def finish(engine: sa.Engine, e: Erasure, settings: Settings | None = None) -> Erasure:
    """Phase 2 of an erasure whose warehouse phase committed, then the audit row becomes ``done``. An
    erasure another process is finishing is left to it (status ``finishing`` in the returned report)."""
    assert e.id is not None
    if not _claim(engine, e.id):
        e.status = "finishing"
        return e
    try:
        new_values = erase_files(e, settings)
    except OSError as exc:
        e.status = "warehouse_done"  # given back: the next drain or `privacy resume` retries
        with begin_write(engine) as conn:
            save(conn, e, error=f"files: {type(exc).__name__}: {exc.strerror or ''}"[:500])
        raise
    with begin_write(engine) as conn:
        if new_values:
            scrub_values(conn, e, new_values)
        scrub_values(conn, e, e.values, canonical=True)
        e.status = "done"
        save(conn, e)
    _checkpoint(engine)
    log.info(
        "erasure %s of %s %s %s: done (%s)",
        e.id,
        e.subject.system,
        e.subject.table,
        e.subject.source_id,
        summary(e),
    )
    return e


def erase(
    system: str,
    table: str,
    source_id: Any,
    *,
    via: str = "cli",
    ref: str | None = None,
    dry_run: bool = False,
    engine: sa.Engine | None = None,
    settings: Settings | None = None,
) -> Erasure:
    """Both phases for one record (the CLI path). A dry run counts what would be erased and changes
    nothing."""
    subject = Subject.of(system, table, source_id)
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    if not dry_run:
        move_broker_dead_letters(settings)
    if dry_run:
        with engine.connect() as conn:
            e = erase_warehouse(conn, subject, via=via, ref=ref, dry_run=True)
            conn.rollback()
        erase_files(e, settings)
        with engine.connect() as conn:
            scrub_values(conn, e, e.values, canonical=True)
        e.status = "dry_run"
        return e
    with begin_write(engine) as conn:
        e = erase_warehouse(conn, subject, via=via, ref=ref)
    return finish(engine, e, settings)


def finish_pending(
    engine: sa.Engine, settings: Settings | None = None, known: dict[int, Erasure] | None = None
) -> list[Erasure]:
    """Complete every erasure whose warehouse phase committed and whose files are not done (``known``: the
    ones this process just started, with the values it found in the warehouse)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(privacy_erasures)
            .where(
                sa.or_(
                    privacy_erasures.c.status == "warehouse_done",
                    sa.and_(
                        privacy_erasures.c.status == "finishing",
                        privacy_erasures.c.finished_at < utcnow() - CLAIM_TIMEOUT,
                    ),
                )
            )
            .order_by(privacy_erasures.c.id)
        ).all()
    done = []
    for r in rows:
        e = (known or {}).get(r.id)
        if e is None:
            e = Erasure(
                Subject(r.source_system, r.entity, r.source_id),
                r.requested_via,
                r.request_ref,
                r.requested_at,
                id=r.id,
                status=r.status,
            )
            e.stores.update({k: v for k, v in json.loads(r.stores or "{}").items() if isinstance(v, int)})
        e = finish(engine, e, settings)
        if e.status == "done":
            done.append(e)
    return done
