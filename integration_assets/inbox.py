"""The file inbox: ``<inbox>/<system>/<entity>/<file>`` in, ``archive/`` or ``rejected/`` out.

A processed file (loaded, or identical to one already loaded) moves to the archive under its content hash;
a file that cannot be loaded moves to ``rejected/`` with a ``.reason.json`` next to it and a dead letter
(stage ``file``) so it shows up in the same review queue as bad rows. A file that failed for a transient
reason (the warehouse was down) stays in the inbox and is picked up again (the sensor retries it with backoff).

Every entry of the inbox is accounted for (see ``survey``): a settled regular file is loaded; a symlink, a
hidden name or a special file is rejected with its reason; a temporary name (``*.part``, ``*.tmp``, editor swap
and lock files...) is left alone while it is younger than INTEGRATION_INBOX_TEMP_MAX_AGE_SECONDS, then rejected.

A load reads a snapshot of the file (``<data dir>/processing/<load id>/``): what is archived is exactly what
was loaded. If the file changed during its load, the snapshot goes to the archive and the changed file stays
in the inbox, to be loaded again as a new version (the merge is idempotent, so rows loaded twice change nothing).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.connectors.files.hashing import content_hash
from integration_assets.dead_letters.store import row_fingerprint, write_row_dead_letters
from integration_assets.privacy.suppress import redact_erased_file
from integration_assets.settings import Settings, env, get_settings
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


log = logging.getLogger(__name__)

# Names a writer or an editor uses while a file is not finished: left alone while fresh (TEMP_MAX_AGE_VAR).
TEMP_SUFFIXES = (
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
    ".swx",
    "~",
)
TEMP_PREFIXES = ("~$", ".~lock.", ".#")
TEMP_MAX_AGE_VAR = "INTEGRATION_INBOX_TEMP_MAX_AGE_SECONDS"
IGNORE_RULE = (
    "names ending in "
    + " ".join(TEMP_SUFFIXES)
    + " or starting with "
    + " ".join(TEMP_PREFIXES)
    + " are files still being written: left alone while younger than "
    + TEMP_MAX_AGE_VAR
    + ", then rejected (stale_temp_file)"
)


def is_temp_name(name: str) -> bool:
    return name.lower().endswith(TEMP_SUFFIXES) or name.startswith(TEMP_PREFIXES)


def temp_max_age() -> float:
    return float(env(TEMP_MAX_AGE_VAR) or 86400)


@dataclass(frozen=True)
class Refused:
    """An inbox entry that is not loaded, and why (it is rejected with this reason)."""

    file: InboxFile
    code: str
    reason: str


@dataclass
class Survey:
    """Every entry under the inbox: files to load, entries to reject, temp files left alone for now."""

    files: list[InboxFile] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    ignored: list[tuple[InboxFile, str]] = field(default_factory=list)  # (file, why)
    settling: list[InboxFile] = field(default_factory=list)


def _entry(root: Path, p: Path, st: os.stat_result) -> InboxFile:
    rel = p.relative_to(root).parts
    if len(rel) == 3:
        return InboxFile(p, rel[0], rel[1], st.st_size, st.st_mtime)
    return InboxFile(p, rel[0] if len(rel) > 1 else "", "/".join(rel[1:-1]), st.st_size, st.st_mtime)


def survey(settings: Settings | None = None) -> Survey:
    """Classify every entry under the inbox without following any symlink (files oldest first)."""
    settings = settings or get_settings()
    root = settings.inbox_dir
    out = Survey()
    if not root.exists():
        return out
    now, max_age = time.time(), temp_max_age()
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        for d in list(dirs):
            if (base / d).is_symlink():  # a linked folder: its files are not the inbox's to read
                dirs.remove(d)
                names.append(d)
        for name in names:
            p = base / name
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue  # moved away meanwhile (another process archived it)
            f = _entry(root, p, st)
            hidden = any(part.startswith(".") for part in p.relative_to(root).parts[:-1]) or name.startswith(
                "."
            )
            if stat.S_ISLNK(st.st_mode):
                out.refused.append(
                    Refused(
                        f,
                        "symlink",
                        f"{name} is a symbolic link; the inbox takes regular files "
                        "only (links are never followed)",
                    )
                )
            elif not stat.S_ISREG(st.st_mode):
                out.refused.append(Refused(f, "not_a_regular_file", f"{name} is not a regular file"))
            elif is_temp_name(name):
                age = now - st.st_mtime
                if age < max_age:
                    out.ignored.append(
                        (f, f"temporary name, {int(age)} s old (left alone for {int(max_age)} s)")
                    )
                else:
                    out.refused.append(
                        Refused(
                            f,
                            "stale_temp_file",
                            f"{name} has a temporary name and has not "
                            f"changed for {int(age)} s: an upload that never finished?",
                        )
                    )
            elif hidden:
                out.refused.append(
                    Refused(
                        f,
                        "hidden_file",
                        f"{name} is hidden (a name starting with '.'); an "
                        "export must have a visible name to be loaded",
                    )
                )
            elif now - st.st_mtime < settings.inbox_settle_seconds:
                out.settling.append(f)  # still being written
            else:
                out.files.append(f)
    out.files.sort(key=lambda f: (f.mtime, str(f.path)))
    return out


def scan(settings: Settings | None = None, *, include_misplaced: bool = False) -> list[InboxFile]:
    """Settled regular files in the inbox, oldest first. Misplaced files (wrong depth) only on request."""
    settings = settings or get_settings()
    return [
        f
        for f in survey(settings).files
        if include_misplaced or len(f.path.relative_to(settings.inbox_dir).parts) == 3
    ]


def processing_dir(settings: Settings) -> Path:
    """Where loads keep the snapshot of the file they read."""
    return settings.data_dir / "processing"


def abandon_dead_loads(engine: sa.Engine, settings: Settings | None = None) -> list[str]:
    """Mark loads left running by dead processes abandoned (ledger.abandon_stale) and drop their snapshots."""
    settings = settings or get_settings()
    abandoned = ledger.abandon_stale(engine)
    for load_id in abandoned:
        shutil.rmtree(processing_dir(settings) / load_id, ignore_errors=True)
    return abandoned


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


def process(
    f: InboxFile,
    *,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_id: str | None = None,
) -> LoadReport:
    """Load one inbox file and move it to archive/ or rejected/. Transient errors propagate, file stays."""
    # The pipeline (pandas, Arrow, pandera) is imported only when a file is actually read: archiving a
    # re-sent copy must stay cheap.
    from integration_assets.contracts.spec import known_entities
    from integration_assets.ingest import ingest_file

    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    known = {(s, e) for s, e, _ in known_entities()}
    if (f.system, f.entity) not in known:
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
            content_hash=content_hash(f.path),
            file_bytes=f.size,
        )
        ledger.record(engine, report)
        reject(f, report, settings, engine)
        return report
    report = ingest_file(
        f.path,
        f.system,
        f.entity,
        settings=settings,
        engine=engine,
        run_id=run_id,
        snapshot_dir=processing_dir(settings),
    )
    loaded = Path(report.loaded_path) if report.loaded_path else None
    try:
        if report.status == "duplicate_file" and loaded is not None and not f.path.exists():
            pass  # another loader archived the file while this one copied it: the copy is not needed
        elif report.status in ("succeeded", "duplicate_file", "rejected"):
            target = f
            if loaded is not None and _changed(f.path, report.content_hash):
                # Bytes arrived (or changed) during the load: archive exactly what was loaded, and leave the file
                # in the inbox to load again as a new version.
                log.warning(
                    "%s changed while it was loaded (%s); the loaded bytes are archived and the file stays "
                    "in the inbox as a new version",
                    f.path.name,
                    report.load_id,
                )
                target = InboxFile(loaded, f.system, f.entity, report.file_bytes or 0, f.mtime)
            if report.status == "rejected":
                reject(target, report, settings, engine)
            else:
                archive(target, report.content_hash, settings)
    finally:
        if loaded is not None:
            shutil.rmtree(loaded.parent, ignore_errors=True)
    return report


def _changed(path: Path, sha256: str | None) -> bool:
    """Whether the inbox file is no longer the content that was loaded (or is gone)."""
    try:
        return content_hash(path) != sha256
    except FileNotFoundError:
        return True


# -- what `integration-assets status` shows about the inbox ---------------------------------------------------
def inbox_status(
    settings: Settings | None = None, engine: sa.Engine | None = None, instance: Any = None
) -> dict[str, Any]:
    """Files waiting, files stuck (their loads failed: attempts and last error), temp files left alone, the rule.

    Attempts are the failed or abandoned loads in the ledger and, with a Dagster instance, the inbox sensor's
    failed runs of that content (a run that could not reach the warehouse left no ledger row); the larger counts.
    """
    from integration_assets.observability.redact import redact_text

    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    found = survey(settings)
    stuck: list[dict[str, Any]] = []
    waiting = 0
    for f in found.files:
        try:
            sha = content_hash(f.path)
        except FileNotFoundError:
            continue
        with engine.connect() as conn:
            failures = ledger.failed_attempts(conn, f.system, f.entity, sha)
        runs_failed, run_error = 0, None
        if instance is not None:
            from integration_assets.sensors.inbox import run_history

            history = run_history(instance, f.system, f.entity, sha)
            runs_failed, run_error = history.failed, history.last_error
        attempts = max(len(failures), runs_failed)
        if not attempts:
            waiting += 1
            continue
        error = (failures[-1].error if failures else None) or run_error or "unknown"
        since = failures[0].started_at if failures else None
        stuck.append(
            {
                "file": str(f.path.relative_to(settings.inbox_dir)),
                "attempts": attempts,
                "last_error": redact_text(error.splitlines()[0] if error else error)[:300],
                "since": since.isoformat() if since else None,
            }
        )
    return {
        "waiting": waiting,
        "settling": len(found.settling),
        "stuck": stuck,
        "ignored": [
            {"file": str(f.path.relative_to(settings.inbox_dir)), "why": why} for f, why in found.ignored
        ],
        "ignore_rule": IGNORE_RULE,
    }


def render_inbox_status(console: Any, data: dict[str, Any] | None) -> None:
    """The inbox lines of the status screen (``console`` is a rich Console)."""
    if not data:
        return
    out = console.print
    stuck, ignored = data["stuck"], data["ignored"]
    out(
        f"Inbox: {data['waiting']} file(s) waiting, {len(stuck)} stuck, {data['settling']} still being written, "
        f"{len(ignored)} left alone (temporary names)",
        highlight=False,
    )
    for s in stuck:
        out(
            f"  [red]stuck[/] {s['file']}: {s['attempts']} failed attempt(s); last error: {s['last_error']}",
            highlight=False,
        )
    for i in ignored:
        out(f"  [dim]left alone[/] {i['file']}: {i['why']}", highlight=False)
    if ignored:
        out(f"  [dim]rule: {data['ignore_rule']}[/]", highlight=False)
