"""Where an inbox file goes once decided: ``archive/`` (loaded, or identical to content already loaded) or
``rejected/`` (with a ``.reason.json`` next to it and a dead letter of stage ``file``, so it shows up in the
same review queue as bad rows). Each move writes its ledger row; nothing here reads the file's records.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Collection
from pathlib import Path

import sqlalchemy as sa

from integration_assets.connectors.files.hashing import content_hash
from integration_assets.dead_letters.store import row_fingerprint, write_row_dead_letters
from integration_assets.erasure.archive import redact_erased_file
from integration_assets.ingest.inbox import Decision, InboxFile, Refused, decide
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.ledger import LoadReport, new_load_id, utcnow


def _unique(dest: Path) -> Path:
    if not dest.exists():
        return dest
    stem, suffix, i = dest.stem, dest.suffix, 1
    while (candidate := dest.with_name(f"{stem}.{i}{suffix}")).exists():
        i += 1
    return candidate


def archive(f: InboxFile, sha256: str | None, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    sha = sha256 or content_hash(f.path)
    dest = settings.archive_dir / f.system / f.entity / f"{utcnow():%Y-%m-%d}" / f"{sha[:12]}__{f.path.name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest = _unique(dest)
    shutil.move(str(f.path), dest)
    redact_erased_file(dest, f.system, f.entity, settings)  # GDPR: erased records are not archived again
    return dest


def reject(
    f: InboxFile, report: LoadReport, settings: Settings | None = None, engine: sa.Engine | None = None
) -> Path:
    """Move an unloadable file to rejected/ with its reason, and open a dead letter for it."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    dest = _unique(settings.rejected_dir / (f.system or "_unknown") / (f.entity or "_unknown") / f.path.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(f.path), dest)  # a symlink moves as a link: its target is never read
    if not dest.is_symlink():
        redact_erased_file(dest, f.system, f.entity, settings)  # GDPR: no erased record in rejected/ either
    reason = {
        "file": f.path.name,
        "folder": f.folder,
        "reason_code": report.reason_code,
        "reason": report.error,
        "load_id": report.load_id,
        "sha256": report.content_hash,
        "bytes": report.file_bytes,
        "rejected_at": utcnow().isoformat(),
    }
    dest.with_name(dest.name + ".reason.json").write_text(
        json.dumps(reason, indent=2) + "\n", encoding="utf-8"
    )
    raw = {
        "file": str(dest.relative_to(settings.rejected_dir)),
        "sha256": report.content_hash,
        "bytes": report.file_bytes,
    }
    with engine.begin() as conn:
        write_row_dead_letters(
            conn,
            [
                {
                    "fingerprint": row_fingerprint(
                        f.system, f.entity, {"file_sha256": report.content_hash or dest.name}
                    ),
                    "source_system": f.system or "_unknown",
                    "entity": f.entity or "_unknown",
                    "natural_key": f.path.name,
                    "stage": "file",
                    "check_name": report.reason_code or "rejected",
                    "reason": report.error or "rejected",
                    "raw_record": json.dumps(raw),
                    "contract_version": report.contract,
                    "file_name": f.path.name,
                    "load_id": report.load_id,
                    "errors": json.dumps(
                        [{"stage": "file", "check": report.reason_code, "reason": report.error}]
                    ),
                }
            ],
        )
    return dest


def archive_duplicate(
    f: InboxFile,
    sha256: str,
    loaded_by: str,
    *,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_id: str | None = None,
) -> LoadReport:
    """A file whose content already loaded: one ledger row (duplicate_file), then the archive. No reading."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    report = LoadReport(
        load_id=new_load_id(),
        source_system=f.system,
        entity=f.entity,
        file_name=f.path.name,
        run_id=run_id,
        status="duplicate_file",
        content_hash=sha256,
        file_bytes=f.size,
        error=f"identical content already loaded by {loaded_by}",
    )
    # Archive first: when another process got there before us, the file is its to account for.
    archive(f, sha256, settings)
    ledger.record(engine, report)
    return report


def refuse(
    r: Refused,
    *,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_id: str | None = None,
) -> LoadReport:
    """Reject an inbox entry that is not a loadable file (a symlink, a hidden or stale temp name...)."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    f = r.file
    report = LoadReport(
        load_id=new_load_id(),
        source_system=f.system or "_unknown",
        entity=f.entity or "_unknown",
        file_name=f.path.name,
        run_id=run_id,
        status="rejected",
        reason_code=r.code,
        error=r.reason,
        file_bytes=f.size,
    )
    # Move first: when another process rejected the entry before us, the entry is its to account for.
    reject(f, report, settings, engine)
    ledger.record(engine, report)
    return report


def reject_misplaced(
    f: InboxFile,
    known: Collection[tuple[str, str]],
    *,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_id: str | None = None,
    sha256: str | None = None,
) -> LoadReport:
    """Reject a file that is not in ``<system>/<entity>/`` of a known contract (``known``), with the reason."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    report = LoadReport(
        load_id=new_load_id(),
        source_system=f.system or "_unknown",
        entity=f.entity or "_unknown",
        file_name=f.path.name,
        run_id=run_id,
        status="rejected",
        reason_code="wrong_folder",
        error=f"{f.path.name} is in {f.folder or '(inbox root)'}/, which is not <system>/<entity>/ of "
        f"a known contract ({', '.join(sorted(f'{s}/{e}' for s, e in known))})",
        content_hash=sha256 or content_hash(f.path),
        file_bytes=f.size,
    )
    ledger.record(engine, report)
    reject(f, report, settings, engine)
    return report


def tidy(
    settings: Settings,
    engine: sa.Engine,
    known: Callable[[], Collection[tuple[str, str]]],
    *,
    run_id: str | None = None,
) -> tuple[Decision, list[LoadReport]]:
    """Decide the inbox, then move what needs no load: refused entries and misplaced files to rejected/,
    content already loaded to the archive (a re-sent export costs one hash and no import of the pipeline).
    Returns the decision (its ``new`` files are left to load) and one ledger report per entry moved."""
    decision = decide(settings, engine, known)
    reports: list[LoadReport] = []
    for refused in decision.refused:  # symlinks, hidden names, stale temp files: rejected with the reason
        try:
            reports.append(refuse(refused, settings=settings, engine=engine, run_id=run_id))
        except FileNotFoundError:
            continue  # another process rejected it first
    for f, sha, done in decision.duplicates:
        try:
            reports.append(archive_duplicate(f, sha, done, settings=settings, engine=engine, run_id=run_id))
        except FileNotFoundError:
            continue  # archived by another process meanwhile: its ledger row accounts for it
    if decision.misplaced:
        entities = known()
        for f, sha in decision.misplaced:
            try:
                reports.append(
                    reject_misplaced(f, entities, settings=settings, engine=engine, run_id=run_id, sha256=sha)
                )
            except FileNotFoundError:
                continue
    return decision, reports
