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
   records (``privacy.files``), copies of the values in the alert log, rejected-file reasons and connector
   state are replaced, values found only in the files are searched for in the warehouse once more, and the
   audit row becomes ``done`` with the counts per store and the hashes of every re-written file. A crash in
   between leaves ``warehouse_done``: ``finish_pending`` (after every drain batch that erased and the first
   batch of every drain, and ``integration-assets privacy resume``) completes it. Files that cannot hold the
   subject's id or values are not parsed (a byte search first), so an archive of years costs mostly reads.

Personal values are held in memory only while an erasure runs: never logged, never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.privacy.files import FileRedactor, FileResult, files_under, replace_atomically
from integration_assets.privacy.subjects import (
    ERASED,
    SourceFields,
    Subject,
    canonical_id,
    distinctive,
    event_id_of,
    event_matches,
    event_values,
    full_name,
    mentions_id,
    personal_columns,
    record_id,
    record_values,
    redact_text,
    source_fields,
    value_forms,
    value_patterns,
)
from integration_assets.settings import Settings, env, get_settings
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters, metadata, privacy_erasures

log = logging.getLogger(__name__)


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


# -- warehouse phase ---------------------------------------------------------------------------------------
def merge_lock(conn: sa.Connection, table: str) -> None:
    """On Postgres, the advisory lock every merge into ``table`` holds (warehouse.writer): an erasure waits
    for a load in flight and a load after it sees the erasure (the lock is re-entrant in one transaction)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('integration_assets.merge'), hashtext(:t))"),
            {"t": table},
        )


def _json(text: Any) -> Any:
    if not isinstance(text, str) or not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


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


def subject_dead_letters(
    conn: sa.Connection,
    subjects: Sequence[Subject],
    fields: SourceFields,
    *,
    ids: Sequence[int] | None = None,
) -> list[tuple[int, Subject, set[str]]]:
    """Dead letters holding a record or event of one of ``subjects`` (all of one system and table), among
    ``ids`` or else among all: (id, subject, personal values)."""
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


def scrub_dead_letters(
    conn: sa.Connection, items: Iterable[tuple[int, Subject, set[str]]], note: str, now: datetime
) -> int:
    """Drop the payload of these dead letters and discard them: the record they held is erased."""
    n = 0
    for dl_id, subject, _ in items:
        row = conn.execute(
            sa.select(dead_letters.c.stage, dead_letters.c.check_name).where(dead_letters.c.id == dl_id)
        ).first()
        if row is None:
            continue
        extra: dict[str, Any] = {}
        if row.stage != "event":
            # A row's fingerprint hashes the record itself (personal data, pseudonymised): replaced. The same
            # record quarantined again gets a new dead letter, erased on arrival.
            extra["fingerprint"] = hashlib.sha256(f"erased\x1f{dl_id}".encode()).hexdigest()
        conn.execute(
            dead_letters.update()
            .where(dead_letters.c.id == dl_id)
            .values(
                **extra,
                raw_record=json.dumps({"erased": note, "source_id": subject.source_id}),
                offending_value=None,
                errors=json.dumps([{"stage": row.stage, "check": row.check_name, "erased": note}]),
                reason=f"{row.check_name}: payload erased ({note})",
                status="discarded",
                resolved_at=now,
                resolution_note=note,
            )
        )
        n += 1
    return n


def _queue_rows(conn: sa.Connection, e: Erasure, skip: set[str], fields: SourceFields) -> None:
    """The subject's events still waiting in the SQL queue table: deleted (counted per store). Rows a drain
    holds right now are left to it: applied, they are suppressed; dead-lettered, their payload is erased
    on arrival (``keep_dead_letters_erased``)."""
    from integration_assets.warehouse.schema import event_queue as q

    if not sa.inspect(conn).has_table(q.name):
        return
    needle = e.subject.source_id.encode()
    if conn.dialect.name == "postgresql":
        contains = sa.text("position(CAST(:needle AS bytea) IN event_queue.body) > 0")
    else:
        contains = sa.text("instr(event_queue.body, :needle) > 0")
    rows = conn.execute(
        sa.select(q.c.id, q.c.message_id, q.c.body, q.c.claim_token, q.c.visible_at_ms).where(
            q.c.source == e.subject.system, contains.bindparams(needle=needle)
        )
    ).all()
    now_ms = int(time.time() * 1000)
    gone: list[int] = []
    for r in rows:
        try:
            doc = json.loads(bytes(r.body).decode("utf-8"))
        except ValueError:
            continue
        if r.message_id in skip or not event_matches(doc, e.subject):
            continue
        e.values |= event_values(doc, fields)
        if r.claim_token is not None and r.visible_at_ms > now_ms:
            e.stores["event_queue_in_flight"] += 1
            continue
        gone.append(int(r.id))
    e.stores["event_queue"] += len(gone)
    if gone and not e.dry_run:
        conn.execute(q.delete().where(q.c.id.in_(gone)))


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
            if not e.dry_run:
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
        e.id = int(
            conn.execute(
                privacy_erasures.insert()
                .values(
                    source_system=subject.system,
                    entity=subject.table,
                    source_id=subject.source_id,
                    requested_via=via,
                    request_ref=(ref or "")[:255] or None,
                    requested_at=e.requested_at,
                    started_at=now,
                    status="running",
                )
                .returning(privacy_erasures.c.id)
            ).scalar_one()
        )
    _erase_row(conn, e, now)
    found = subject_dead_letters(conn, [subject], fields)
    for _, _, values in found:
        e.values |= values
    e.stores["dead_letters"] += len(found)
    if not dry_run:
        scrub_dead_letters(conn, found, _note(e), now)
    _queue_rows(conn, e, set(skip_message_ids), fields)
    scrub_values(conn, e, e.values)
    e.status = "warehouse_done"
    _save(conn, e)
    if sqlite:
        conn.exec_driver_sql("PRAGMA secure_delete = OFF")
    log.info(
        "erasure %s of %s %s %s: warehouse done (%s)",
        e.id,
        subject.system,
        subject.table,
        subject.source_id,
        _counts(e),
    )
    return e


def _note(e: Erasure) -> str:
    return f"GDPR erasure {e.id}"


def _counts(e: Erasure) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(e.stores.items())) or "nothing found"


def _save(conn: sa.Connection, e: Erasure, error: str | None = None) -> None:
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


# -- file phase --------------------------------------------------------------------------------------------
def _plain_files(settings: Settings) -> list[Path]:
    """Small text stores that may hold a copy of a value: the alert log, rejected-file reasons, cursors."""
    log_path = env("INTEGRATION_ALERT_LOG")
    out = [Path(log_path) if log_path else settings.data_dir / "alerts.jsonl"]
    out += [p for p in files_under(settings.rejected_dir) if p.name.endswith(".reason.json")]
    state = env("INTEGRATION_CONNECTOR_STATE_DIR")
    out += list(files_under(Path(state) if state else settings.data_dir / "connectors"))
    return [p for p in out if p.is_file()]


def _scrub_plain_file(path: Path, patterns: list[re.Pattern[str]], dry_run: bool) -> int:
    """Replace the values in a text file; lines appended meanwhile (the alert log is append-only) are kept:
    the file is re-read when it grew before the rename."""
    for _ in range(5):
        before = path.stat().st_size
        data = path.read_bytes()
        text = data.decode("utf-8", "surrogateescape")
        new, n = redact_text(text, patterns)
        if not n or dry_run:
            return n
        if path.stat().st_size != before:
            continue
        replace_atomically(path, new.encode("utf-8", "surrogateescape"))
        return n
    raise OSError(f"{path.name} kept growing while it was being re-written")


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
    for path in _plain_files(settings):
        n = _scrub_plain_file(path, redactor.patterns, e.dry_run)
        if n:
            e.stores["alert_log_values" if path.name.endswith(".jsonl") else "file_values"] += n
    return e.values - known


# A claim on an erasure's file phase that is older than this was left by a process that died: taken over.
CLAIM_TIMEOUT = timedelta(hours=1)


def _claim(engine: sa.Engine, erasure_id: int) -> bool:
    """Take the file phase of an erasure (status ``finishing``; ``finished_at`` holds the claim time until it
    is done), so two drains or a drain and the CLI never finish the same erasure and overwrite each other's
    counts."""
    from integration_assets.warehouse.db import begin_write

    t = privacy_erasures
    now = utcnow()
    with begin_write(engine) as conn:
        claimed = conn.execute(
            t.update()
            .where(
                t.c.id == erasure_id,
                sa.or_(
                    t.c.status == "warehouse_done",
                    sa.and_(t.c.status == "finishing", t.c.finished_at < now - CLAIM_TIMEOUT),
                ),
            )
            .values(status="finishing", finished_at=now)
        ).rowcount
    return claimed == 1


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
    from integration_assets.warehouse.db import begin_write

    assert e.id is not None
    if not _claim(engine, e.id):
        e.status = "finishing"
        return e
    try:
        new_values = erase_files(e, settings)
    except OSError as exc:
        e.status = "warehouse_done"  # given back: the next drain or `privacy resume` retries
        with begin_write(engine) as conn:
            _save(conn, e, error=f"files: {type(exc).__name__}: {exc.strerror or ''}"[:500])
        raise
    with begin_write(engine) as conn:
        if new_values:
            scrub_values(conn, e, new_values)
        scrub_values(conn, e, e.values, canonical=True)
        e.status = "done"
        _save(conn, e)
    _checkpoint(engine)
    log.info(
        "erasure %s of %s %s %s: done (%s)",
        e.id,
        e.subject.system,
        e.subject.table,
        e.subject.source_id,
        _counts(e),
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
    from integration_assets.warehouse.db import begin_write, get_engine

    subject = Subject.of(system, table, source_id)
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    if not dry_run:
        _move_broker_dead_letters(settings)
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


def _move_broker_dead_letters(settings: Settings) -> None:
    """With RabbitMQ, dead-lettered events wait in the broker's dead-letter queue until a drain moves them into
    ``dead_letters``: move them now, so that the subject's are erased there (a queue message cannot be edited
    in place). Events still in the main queue are applied later and kept erased (``privacy.suppress``)."""
    if not settings.queue_url.startswith(("amqp://", "amqps://")):
        return
    from integration_assets.queue import QueueError
    from integration_assets.queue.factory import open_queue

    queue = open_queue(settings.queue_url, warehouse_url=settings.warehouse_url)
    try:
        moved = queue.drain_dead_letters()
    except QueueError as exc:
        raise ErasureUnavailable(
            f"the broker's dead letters could not be moved first ({type(exc).__name__}); "
            "nothing was erased: retry when RabbitMQ is reachable"
        ) from exc
    finally:
        queue.close()
    if moved:
        log.info("moved %d broker dead letter(s) into dead_letters before the erasure", moved)


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


def erased_subjects(conn: sa.Connection) -> dict[tuple[str, str], list[Subject]]:
    """Every erased record, per (source system, table)."""
    out: dict[tuple[str, str], list[Subject]] = {}
    stmt = sa.select(
        privacy_erasures.c.source_system, privacy_erasures.c.entity, privacy_erasures.c.source_id
    )
    for system, table, source_id in conn.execute(stmt.distinct()):
        out.setdefault((system, table), []).append(Subject(system, table, source_id))
    return out


__all__ = ["ERASED", "Erasure", "erase", "erase_files", "erase_warehouse", "finish", "finish_pending"]
