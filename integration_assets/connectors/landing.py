"""Land API pages in the file inbox as JSONL, and remember how far each (system, entity) got.

An API pull ends where an export drop ends: a file in ``<inbox>/<system>/<entity>/``, loaded by the same
contracts (``hubspot.*.api@v1``, ``odoo.*.api@v1``) through the ``inbox_sensor`` or ``integration-assets sync``.

- **Atomic files.** Records are written to ``<name>.jsonl.part``, flushed and fsynced, then renamed; the inbox
  scan ignores ``.part`` files, so a loader never sees half a file. A pull that fails mid-way removes its
  ``.part`` and leaves only whole files behind, all of them covered by the cursor it saved.
- **Cursor per (system, entity)**, a small JSON file under ``INTEGRATION_CONNECTOR_STATE_DIR`` (default
  ``<data dir>/connectors``): the *watermark* (newest source modified time landed) and the ids and versions
  landed within ``overlap`` of it. The next pull asks for records modified at or after ``watermark - overlap``:
  ``>=`` covers the source's timestamp precision (several records in one second/millisecond), the extra
  overlap covers what arrives late (HubSpot's search index lags writes by seconds; an Odoo transaction commits
  after its ``write_date``). Records already landed with the same version are dropped by id; anything
  re-landed anyway is harmless because the warehouse merge is idempotent (newer wins, equal is unchanged).
- **When the cursor moves.** A pull whose pages ascend by modified time (search / search_read in
  ``write_date`` order) saves the cursor after every file; a full list pull, which is in id order, saves it once
  at the end, capped at the time the pull started (a record changed during the pull may have been listed
  before the change). Files come first, cursor second: a crash in between re-lands records, never loses them.

One pull per (system, entity) at a time: an advisory lock on the cursor file makes a second one fail as
transient (the next schedule tick retries).

**Partition windows** (:func:`pull_window`, the daily partitions of ``assets/pull.py``): no cursor; the records
modified in ``[start, end)`` land as one file named with the partition key, written only when the window's
pull completed (a pull failing halfway leaves no file, the retry pulls the window again). Records the API
returns outside the window are counted and logged, not landed: they belong to another partition.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from integration_assets.contracts.spec import entity_slug
from integration_assets.errors import TransientError
from integration_assets.settings import Settings, env, get_settings

__all__ = [
    "Cursor",
    "CursorStore",
    "PullInProgress",
    "PullReport",
    "Pull",
    "Source",
    "WindowReport",
    "WindowSource",
    "default_state_dir",
    "pull_entity",
    "pull_window",
    "write_jsonl_atomic",
]

log = logging.getLogger(__name__)

# Records per inbox file: each file is one load (one sensor run), so pages are batched; 10,000 API records
# of these entities is a few MB, well inside INTEGRATION_MAX_FILE_BYTES and INTEGRATION_CHUNK_ROWS.
RECORDS_PER_FILE = 10_000
# Ids remembered next to the watermark, at most; beyond this the overlap simply re-lands (idempotently).
MAX_SEEN = 100_000


class PullInProgress(TransientError):
    """Another pull of the same (system, entity) holds the cursor lock."""


@dataclass(frozen=True)
class Pull:
    """The pages one pull will read, and whether they ascend by modified time."""

    pages: Iterator[list[dict[str, Any]]]
    ordered: bool


class Source(Protocol):
    """What a connector offers the landing: pages of raw records, and each record's id and version."""

    system: str
    entities: tuple[str, ...]
    overlap: timedelta

    def pull(self, entity: str, since: datetime | None) -> Pull:
        """Records modified at or after ``since`` (every record when None)."""

    def record_id(self, entity: str, record: dict[str, Any]) -> str: ...

    def version_of(self, entity: str, record: dict[str, Any]) -> datetime:
        """The record's modified time (UTC, aware): what the watermark is made of."""


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- cursor -------------------------------------------------------------------------------------------------


@dataclass
class Cursor:
    """How far one (system, entity) has been landed."""

    watermark: datetime | None = None
    seen: dict[str, str] = field(default_factory=dict)  # record id -> version (ISO) landed near the watermark
    updated_at: datetime | None = None
    last_pull: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "watermark": _iso(self.watermark) if self.watermark else None,
            "seen": self.seen,
            "updated_at": _iso(self.updated_at) if self.updated_at else None,
            "last_pull": self.last_pull,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cursor:
        return cls(
            watermark=_parse_iso(data["watermark"]) if data.get("watermark") else None,
            seen={str(k): str(v) for k, v in (data.get("seen") or {}).items()},
            updated_at=_parse_iso(data["updated_at"]) if data.get("updated_at") else None,
            last_pull=dict(data.get("last_pull") or {}),
        )


def default_state_dir(settings: Settings | None = None) -> Path:
    configured = env("INTEGRATION_CONNECTOR_STATE_DIR")
    if configured:
        return Path(configured).resolve()
    return (settings or get_settings()).data_dir / "connectors"


class CursorStore:
    """Cursors as one small JSON file per (system, entity), replaced atomically."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_state_dir()

    def path(self, system: str, entity: str) -> Path:
        return self.root / system / f"{entity_slug(entity)}.json"

    def load(self, system: str, entity: str) -> Cursor:
        p = self.path(system, entity)
        if not p.exists():
            return Cursor()
        return Cursor.from_json(json.loads(p.read_text(encoding="utf-8")))

    def save(self, system: str, entity: str, cursor: Cursor) -> None:
        p = self.path(system, entity)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(cursor.to_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, p)

    def reset(self, system: str, entity: str) -> None:
        self.path(system, entity).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, system: str, entity: str) -> Iterator[None]:
        p = self.path(system, entity).with_suffix(".lock")
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise PullInProgress(
                    f"a pull of {system}/{entity} is already running (lock {p.name})"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- files --------------------------------------------------------------------------------------------------


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` as JSONL to ``path`` via ``path.part`` + fsync + rename; returns the record count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    n = 0
    try:
        with open(part, "w", encoding="utf-8", newline="\n") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
                fh.write("\n")
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename durable too (not possible on every filesystem)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return n


# --- the pull -----------------------------------------------------------------------------------------------


@dataclass
class PullReport:
    """What one pull of one (system, entity) did."""

    system: str
    entity: str
    mode: str  # full | incremental
    since: str | None
    watermark_before: str | None
    watermark_after: str | None
    records: int = 0  # landed in files
    skipped: int = 0  # already landed with the same version (overlap)
    pages: int = 0
    files: list[str] = field(default_factory=list)
    cursor_saved: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prune(seen: dict[str, datetime], floor: datetime, limit: int = MAX_SEEN) -> dict[str, datetime]:
    kept = {k: v for k, v in seen.items() if v >= floor}
    if len(kept) > limit:  # keep the newest; older ones are re-landed by the overlap at worst
        kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[-limit:])
    return kept


def pull_entity(
    source: Source,
    entity: str,
    *,
    inbox_dir: Path | None = None,
    store: CursorStore | None = None,
    since: datetime | None = None,
    full: bool = False,
    records_per_file: int = RECORDS_PER_FILE,
    clock: Callable[[], datetime] = utcnow,
) -> PullReport:
    """Pull one entity of ``source`` into ``<inbox>/<system>/<entity>/`` and advance its cursor.

    ``since`` overrides the cursor (a backfill from that time); ``full`` ignores the cursor and pulls every
    record. The cursor is only moved by a pull that started at or before it, so ``since`` in the future of
    the cursor cannot make later pulls skip the records in between.
    """
    settings = get_settings()
    inbox_dir = Path(inbox_dir) if inbox_dir is not None else settings.inbox_dir
    store = store or CursorStore()
    system = source.system
    folder = inbox_dir / system / entity
    t0 = time.perf_counter()
    with store.lock(system, entity):
        cursor = store.load(system, entity)
        started = clock()
        if full:
            effective = None
        elif since is not None:
            effective = since.astimezone(UTC) if since.tzinfo else since.replace(tzinfo=UTC)
        elif cursor.watermark is not None:
            effective = cursor.watermark - source.overlap
        else:
            effective = None
        incremental = effective is not None
        may_move = cursor.watermark is None or effective is None or effective <= cursor.watermark
        report = PullReport(
            system,
            entity,
            "incremental" if incremental else "full",
            _iso(effective) if effective else None,
            _iso(cursor.watermark) if cursor.watermark else None,
            None,
        )
        # id -> version already landed (the cursor's window; nothing when re-landing everything)
        landed: dict[str, datetime] = {} if full else {k: _parse_iso(v) for k, v in cursor.seen.items()}
        pending: dict[str, datetime] = {}
        buffer: list[dict[str, Any]] = []
        newest: datetime | None = None  # newest version written to a file by this pull
        pull_id = uuid.uuid4().hex[:8]
        stamp = started.strftime("%Y%m%dT%H%M%SZ")

        def flush(batch: list[dict[str, Any]]) -> None:
            nonlocal newest
            name = f"{entity}-{stamp}-{pull_id}-{len(report.files) + 1:05d}.jsonl"
            write_jsonl_atomic(folder / name, batch)
            report.files.append(str(folder / name))
            report.records += len(batch)
            for rec in batch:
                rid = source.record_id(entity, rec)
                v = pending.pop(rid) if rid in pending else source.version_of(entity, rec)
                landed[rid] = v
                newest = v if newest is None or v > newest else newest

        def save() -> None:
            if not may_move or newest is None:
                return
            # A list in id order may have shown a record before a change made during the pull.
            mark = newest if pull.ordered else min(newest, started)
            if cursor.watermark is not None and cursor.watermark > mark:
                mark = cursor.watermark
            window = _prune(landed, mark - source.overlap)
            store.save(
                system,
                entity,
                Cursor(
                    watermark=mark,
                    seen={k: _iso(v) for k, v in window.items()},
                    updated_at=clock(),
                    last_pull={
                        "mode": report.mode,
                        "since": report.since,
                        "records": report.records,
                        "files": len(report.files),
                        "at": _iso(started),
                    },
                ),
            )
            report.watermark_after = _iso(mark)
            report.cursor_saved = True

        pull = source.pull(entity, effective)
        for page in pull.pages:
            report.pages += 1
            for rec in page:
                rid = source.record_id(entity, rec)
                v = source.version_of(entity, rec)
                if landed.get(rid) == v or pending.get(rid) == v:
                    report.skipped += 1
                    continue
                pending[rid] = v
                buffer.append(rec)
            while len(buffer) >= records_per_file:
                flush(buffer[:records_per_file])
                buffer = buffer[records_per_file:]
                if pull.ordered:
                    save()
            if len(landed) > 2 * MAX_SEEN and newest is not None:
                landed = _prune(landed, newest - source.overlap)
        if buffer:
            flush(buffer)
        save()
        report.seconds = round(time.perf_counter() - t0, 3)
    if not may_move:
        log.warning(
            "%s/%s: pulled from %s, after the cursor %s; cursor left unchanged",
            system,
            entity,
            report.since,
            report.watermark_before,
        )
    log.info(
        "%s/%s: %s pull landed %d record(s) in %d file(s), skipped %d already landed; watermark %s -> %s",
        system,
        entity,
        report.mode,
        report.records,
        len(report.files),
        report.skipped,
        report.watermark_before,
        report.watermark_after,
    )
    return report


# --- partition windows --------------------------------------------------------------------------------------


class WindowSource(Protocol):
    """What a connector offers a partition pull: the records modified in a half-open time window."""

    system: str

    def pull_window(self, entity: str, start: datetime, end: datetime) -> Iterable[list[dict[str, Any]]]:
        """Pages of the records modified in ``[start, end)`` (UTC, aware)."""

    def record_id(self, entity: str, record: dict[str, Any]) -> str: ...

    def version_of(self, entity: str, record: dict[str, Any]) -> datetime: ...


@dataclass
class WindowReport:
    """What one partition window's pull did."""

    system: str
    entity: str
    partition_key: str
    start: str
    end: str
    pulled: int = 0  # records the API returned
    records: int = 0  # landed: returned and inside the window
    outside: int = 0  # returned but outside the window: not landed
    pages: int = 0
    file: str | None = None  # None when the window had no record
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Ids of out-of-window records named in the log line (ids only: never field values).
_OUTSIDE_LOGGED = 5


def pull_window(
    source: WindowSource,
    entity: str,
    partition_key: str,
    start: datetime,
    end: datetime,
    *,
    inbox_dir: Path | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> WindowReport:
    """Pull the records of ``entity`` modified in ``[start, end)`` into one file
    ``<inbox>/<system>/<entity>/<entity>-<partition_key>-<time>-<id>.jsonl``.

    The file is written through ``.part`` and renamed once the last page arrived: an error mid-way leaves
    nothing in the inbox. A record whose version is outside the window is counted in ``outside`` and logged,
    not landed. No record: no file."""
    inbox_dir = Path(inbox_dir) if inbox_dir is not None else get_settings().inbox_dir
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    report = WindowReport(source.system, entity, partition_key, _iso(start), _iso(end))
    t0 = time.perf_counter()
    outside_ids: list[str] = []

    def in_window() -> Iterator[dict[str, Any]]:
        for page in source.pull_window(entity, start, end):
            report.pages += 1
            for rec in page:
                report.pulled += 1
                v = source.version_of(entity, rec)
                if not start <= v < end:
                    report.outside += 1
                    if len(outside_ids) < _OUTSIDE_LOGGED:
                        outside_ids.append(f"{source.record_id(entity, rec)}@{_iso(v)}")
                    continue
                yield rec

    folder = inbox_dir / source.system / entity
    name = f"{entity}-{partition_key}-{clock():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}.jsonl"
    path = folder / name
    records = in_window()
    first = next(records, None)  # an empty window lands nothing (not even for a moment)
    if first is not None:
        report.records = write_jsonl_atomic(path, itertools.chain([first], records))
        report.file = str(path)
    report.seconds = round(time.perf_counter() - t0, 3)
    if report.outside:
        log.warning(
            "%s/%s partition %s: the API returned %d record(s) outside [%s, %s), not landed (e.g. %s)",
            source.system,
            entity,
            partition_key,
            report.outside,
            report.start,
            report.end,
            ", ".join(outside_ids),
        )
    log.info(
        "%s/%s partition %s: pulled %d record(s) in %d page(s), landed %d",
        source.system,
        entity,
        partition_key,
        report.pulled,
        report.pages,
        report.records,
    )
    return report
