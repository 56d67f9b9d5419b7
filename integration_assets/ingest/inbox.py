"""The file inbox, read-only: ``<inbox>/<system>/<entity>/<file>``, and "is this file already loaded?".

Every entry of the inbox is accounted for (see ``survey``): a settled regular file is loaded; a symlink, a
hidden name or a special file is rejected with its reason; a temporary name (``*.part``, ``*.tmp``, editor swap
and lock files...) is left alone while it is younger than INTEGRATION_INBOX_TEMP_MAX_AGE_SECONDS, then rejected.

``decide`` sorts what the inbox holds (new content, content already loaded, entries to refuse, misplaced
files) from the ledger alone: the inbox sensor's tick, ``sync`` and the runs all ask it, and nothing here
moves a file or writes a row. The moves are in ``ingest.archive``; loading is ``ingest.process``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.connectors.files.hashing import content_hash
from integration_assets.observability.redact import redact_text
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import loads


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
    now, max_age = time.time(), settings.inbox_temp_max_age_seconds
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


# -- "is this file already loaded?" ---------------------------------------------------------------------------
def already_loaded(conn: sa.Connection, system: str, entity: str, sha256: str) -> str | None:
    """The load id that already loaded this exact content for this entity, or None. The one place that
    answers it: the sensor's tick, ``sync``, the tidy run and the load itself ask here."""
    return ledger.succeeded_load_for(conn, system, entity, sha256)


def file_hash(f: InboxFile, cached: Sequence[Any] | None = None) -> str:
    """The content hash of an inbox file: ``cached`` ([size, mtime, sha], e.g. from the sensor's cursor) when
    the file is unchanged, else one pass over the bytes (remembered per process by ``content_hash``)."""
    if cached and cached[0] == f.size and cached[1] == f.mtime:
        return str(cached[2])
    return content_hash(f.path)


@dataclass
class Decision:
    """What the inbox holds, sorted without moving anything. Files that vanish meanwhile are left out."""

    survey: Survey
    new: list[tuple[InboxFile, str]] = field(default_factory=list)  # (file, sha): to load
    duplicates: list[tuple[InboxFile, str, str]] = field(default_factory=list)  # (file, sha, loaded by)
    misplaced: list[tuple[InboxFile, str]] = field(
        default_factory=list
    )  # (file, sha): not <system>/<entity>/

    @property
    def refused(self) -> list[Refused]:
        return self.survey.refused

    @property
    def to_tidy(self) -> bool:
        """Whether there are entries to move without loading them (refused, duplicates, misplaced)."""
        return bool(self.survey.refused or self.duplicates or self.misplaced)


def decide(
    settings: Settings,
    engine: sa.Engine | None,
    known: Callable[[], Collection[tuple[str, str]]],
    *,
    hashes: Mapping[str, Sequence[Any]] | None = None,
) -> Decision:
    """Sort the inbox: each settled file is hashed once; content already loaded is a duplicate; a file outside
    ``<system>/<entity>/`` of a contract (``known``, asked only when a file needs it: it imports the contracts)
    is misplaced; the rest is new. ``engine=None`` decides without the ledger (the warehouse is down: nothing
    counts as loaded). A warehouse not migrated yet has loaded nothing. ``hashes``: path -> [size, mtime, sha]
    known from before."""
    out = Decision(survey(settings))
    hashes = hashes or {}
    entities: Collection[tuple[str, str]] | None = None
    conn = engine.connect() if engine is not None else None
    try:
        ledger_ready = conn is not None and sa.inspect(conn).has_table(loads.name)
        for f in out.survey.files:
            try:
                sha = file_hash(f, hashes.get(str(f.path)))
            except FileNotFoundError:
                continue  # archived by another process meanwhile: its ledger row accounts for it
            done = (
                already_loaded(conn, f.system, f.entity, sha) if conn is not None and ledger_ready else None
            )
            if done:
                out.duplicates.append((f, sha, done))
                continue
            if entities is None:
                entities = known()
            if (f.system, f.entity) in entities:
                out.new.append((f, sha))
            else:
                out.misplaced.append((f, sha))
    finally:
        if conn is not None:
            conn.close()
    return out


# -- what `integration-assets status` shows about the inbox ---------------------------------------------------
RunAttempts = Callable[[str, str, str], tuple[int, str | None]]


def inbox_status(
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_attempts: RunAttempts | None = None,
) -> dict[str, Any]:
    """Files waiting, files stuck (their loads failed: attempts and last error), temp files left alone, the rule.

    Attempts are the failed or abandoned loads in the ledger and, with ``run_attempts(system, entity, sha)``
    (the inbox sensor's failed runs of that content and their last error, from the Dagster instance: a run that
    could not reach the warehouse left no ledger row), the larger count.
    """
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
        if run_attempts is not None:
            runs_failed, run_error = run_attempts(f.system, f.entity, sha)
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
