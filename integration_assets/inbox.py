"""The file inbox: ``<inbox>/<system>/<entity>/<file>`` in, ``archive/`` or ``rejected/`` out.

A processed file (loaded, or identical to one already loaded) moves to the archive under its content hash;
a file that cannot be loaded moves to ``rejected/`` with a ``.reason.json`` next to it and a dead letter
(stage ``file``) so it shows up in the same review queue as bad rows. A file that failed for a transient
reason (the warehouse was down) stays in the inbox and is picked up again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from integration_assets.connectors.hashing import content_hash
from integration_assets.privacy.suppress import redact_erased_file
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.ledger import LoadReport, new_load_id, utcnow


@dataclass(frozen=True)
class InboxFile:
    path: Path
    system: str
    entity: str
    size: int
    mtime: float

    @property
    def folder(self) -> str:
        return f"{self.system}/{self.entity}"


def entity_slug(entity: str) -> str:
    """Odoo model names (sale.order) as identifiers (sale_order)."""
    return entity.replace(".", "_")


def scan(settings: Settings | None = None, *, include_misplaced: bool = False) -> list[InboxFile]:
    """Settled files in the inbox, oldest first. Misplaced files (wrong depth) only on request."""
    settings = settings or get_settings()
    root = settings.inbox_dir
    if not root.exists():
        return []
    now = time.time()
    out = []
    for p in root.rglob("*"):
        if not p.is_file() or p.name.startswith(".") or p.name.endswith(".part"):
            continue
        st = p.stat()
        if now - st.st_mtime < settings.inbox_settle_seconds:
            continue  # still being written
        rel = p.relative_to(root).parts
        if len(rel) == 3:
            out.append(InboxFile(p, rel[0], rel[1], st.st_size, st.st_mtime))
        elif include_misplaced:
            out.append(InboxFile(p, rel[0] if len(rel) > 1 else "", "/".join(rel[1:-1]), st.st_size, st.st_mtime))
    return sorted(out, key=lambda f: (f.mtime, str(f.path)))


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


def reject(f: InboxFile, report: LoadReport, settings: Settings | None = None,
           engine: sa.Engine | None = None) -> Path:
    """Move an unloadable file to rejected/ with its reason, and open a dead letter for it."""
    from integration_assets.warehouse.writer import fingerprint, upsert_dead_letters

    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    dest = _unique(settings.rejected_dir / (f.system or "_unknown") / (f.entity or "_unknown") / f.path.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(f.path), dest)
    if not dest.is_symlink():
        redact_erased_file(dest, f.system, f.entity, settings)  # GDPR: no erased record in rejected/ either
    reason = {"file": f.path.name, "folder": f.folder, "reason_code": report.reason_code, "reason": report.error,
              "load_id": report.load_id, "sha256": report.content_hash, "bytes": report.file_bytes,
              "rejected_at": utcnow().isoformat()}
    dest.with_name(dest.name + ".reason.json").write_text(json.dumps(reason, indent=2) + "\n", encoding="utf-8")
    raw = {"file": str(dest.relative_to(settings.rejected_dir)), "sha256": report.content_hash, "bytes": report.file_bytes}
    with engine.begin() as conn:
        upsert_dead_letters(conn, [{
            "fingerprint": fingerprint(f.system, f.entity, {"file_sha256": report.content_hash or dest.name}),
            "source_system": f.system or "_unknown", "entity": f.entity or "_unknown", "natural_key": f.path.name,
            "stage": "file", "check_name": report.reason_code or "rejected", "reason": report.error or "rejected",
            "raw_record": json.dumps(raw), "contract_version": report.contract, "file_name": f.path.name,
            "load_id": report.load_id, "errors": json.dumps([{"stage": "file", "check": report.reason_code, "reason": report.error}]),
        }])
    return dest


def archive_duplicate(f: InboxFile, sha256: str, loaded_by: str, *, settings: Settings | None = None,
                      engine: sa.Engine | None = None, run_id: str | None = None) -> LoadReport:
    """A file whose content already loaded: one ledger row (duplicate_file), then the archive. No reading."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    report = LoadReport(load_id=new_load_id(), source_system=f.system, entity=f.entity, file_name=f.path.name,
                        run_id=run_id, status="duplicate_file", content_hash=sha256, file_bytes=f.size,
                        error=f"identical content already loaded by {loaded_by}")
    with engine.begin() as conn:
        ledger.start(conn, report)
        ledger.finish(conn, report)
    archive(f, sha256, settings)
    return report


def process(f: InboxFile, *, settings: Settings | None = None, engine: sa.Engine | None = None,
            run_id: str | None = None) -> LoadReport:
    """Load one inbox file and move it to archive/ or rejected/. Transient errors propagate, file stays."""
    # The pipeline (pandas, Arrow, pandera) is imported only when a file is actually read: archiving a
    # re-sent copy must stay cheap.
    from integration_assets.contracts.spec import known_entities
    from integration_assets.ingest import ingest_file

    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    known = {(s, e) for s, e, _ in known_entities()}
    if (f.system, f.entity) not in known:
        report = LoadReport(load_id=new_load_id(), source_system=f.system or "_unknown", entity=f.entity or "_unknown",
                            file_name=f.path.name, run_id=run_id, status="rejected", reason_code="wrong_folder",
                            error=f"{f.path.name} is in {f.folder or '(inbox root)'}/, which is not <system>/<entity>/ of "
                                  f"a known contract ({', '.join(sorted(f'{s}/{e}' for s, e in known))})",
                            content_hash=content_hash(f.path), file_bytes=f.size)
        with engine.begin() as conn:
            ledger.start(conn, report)
            ledger.finish(conn, report)
        reject(f, report, settings, engine)
        return report
    report = ingest_file(f.path, f.system, f.entity, settings=settings, engine=engine, run_id=run_id)
    if report.status in ("succeeded", "duplicate_file"):
        archive(f, report.content_hash, settings)
    elif report.status == "rejected":
        reject(f, report, settings, engine)
    return report
