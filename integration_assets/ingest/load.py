"""Load one export file into its canonical table: read → contract → map → validate → quarantine → merge.

This is the plain-Python core that the Dagster assets, the CLI and the benchmarks all call. It accounts
for every record (loaded, suppressed as a duplicate, or quarantined with a reason) and writes the canonical
rows, the dead letters, the drift findings and the ledger row of a file in one transaction.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from integration_assets.connectors.files.hashing import content_hash, snapshot
from integration_assets.connectors.files.source import EncodingUnverified, SourceFile, inspect
from integration_assets.contracts.matching import ContractMatch, column_drift, match_contract
from integration_assets.contracts.records import FileRejected, RawChunk
from integration_assets.contracts.spec import get_contract
from integration_assets.dead_letters.store import write_row_dead_letters
from integration_assets.ingest.inbox import already_loaded
from integration_assets.ingest.quarantine import dead_letter_rows, reference_failures
from integration_assets.mapping.drift import DriftStats
from integration_assets.mapping.engine import ContractMapper
from integration_assets.mapping.results import MappedChunk
from integration_assets.observability.logging import correlation
from integration_assets.privacy.suppress import merge_keeping_erased
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.db import begin_write, get_engine
from integration_assets.warehouse.ledger import LoadReport, new_load_id
from integration_assets.warehouse.schema_drift import record_drift
from integration_assets.warehouse.writer import CanonicalStage

log = logging.getLogger(__name__)


def ingest_file(
    path: Path,
    system: str,
    entity: str,
    *,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_id: str | None = None,
    force: bool = False,
    contract_id: str | None = None,
    kind: str = "file",
    snapshot_dir: Path | None = None,
) -> LoadReport:
    """Load one file. Never raises for bad input: a rejected file comes back with status='rejected'.

    ``force`` reloads content whose hash was already loaded, and its rows win a tie: a stored row of the same
    source version (``source_updated_at``) whose values differ is replaced (the contract changed since, e.g. a
    fixed value map); unchanged rows stay unchanged and an older version never replaces a newer one. ``contract_id`` pins a contract version instead of choosing the newest that fits.
    ``snapshot_dir``: load a copy of the file made there (``report.loaded_path``), so that what was loaded is
    exactly the bytes hashed even if a writer still appends to the file (the inbox passes it).
    Content another live process is loading comes back with status='already_loading'. A missing file raises
    FileNotFoundError before anything is written.
    """
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    report = LoadReport(
        load_id=new_load_id(),
        source_system=system,
        entity=entity,
        file_name=path.name,
        run_id=run_id,
        kind=kind,
    )
    with correlation(run_id=run_id, load_id=report.load_id, source_system=system, entity=entity):
        try:
            return _ingest(path, system, entity, settings, engine, report, force, contract_id, snapshot_dir)
        finally:
            ledger.release(
                report.load_id
            )  # over, even if the warehouse was gone and its row still says running


def _claim(
    path: Path, settings: Settings, engine: sa.Engine, report: LoadReport, snapshot_dir: Path | None
) -> Path:
    """Fix the bytes to load (a snapshot when asked), hash them and claim that content; returns what to read.

    The running ledger row carries the hash: a second process on the same content is refused by the ledger's
    unique index (ledger.AlreadyLoading). A file over the size limit is neither copied nor hashed: inspect
    rejects it unread, under a claim without a hash.
    """
    size = path.stat().st_size
    if settings.max_file_bytes and size > settings.max_file_bytes:
        with engine.begin() as conn:
            ledger.start(conn, report)
        return path
    if snapshot_dir is not None:
        dest = snapshot_dir / report.load_id / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        report.content_hash, report.file_bytes = snapshot(path, dest)
        report.loaded_path = str(dest)
        source = dest
    else:
        report.content_hash, report.file_bytes = content_hash(path), size
        source = path
    ledger.claim(engine, report)
    return source


def _drop_snapshot(report: LoadReport) -> None:
    """A load that raises leaves the file in the inbox: its snapshot goes (the caller never sees the report)."""
    if report.loaded_path:
        shutil.rmtree(Path(report.loaded_path).parent, ignore_errors=True)
        report.loaded_path = None


def _ingest(
    path: Path,
    system: str,
    entity: str,
    settings: Settings,
    engine: sa.Engine,
    report: LoadReport,
    force: bool,
    contract_id: str | None,
    snapshot_dir: Path | None = None,
) -> LoadReport:
    t0 = time.perf_counter()
    try:
        source = _claim(path, settings, engine, report, snapshot_dir)
    except ledger.AlreadyLoading as exc:
        # The other load archives the file; this attempt is recorded, and the file is left to it.
        _drop_snapshot(report)
        report.status, report.error = "already_loading", str(exc)
        with engine.begin() as conn:
            ledger.start(conn, report)
            ledger.finish(conn, report)
        log.info("load %s: %s/%s %s is %s", report.load_id, system, entity, path.name, report.error)
        return report
    except BaseException:
        _drop_snapshot(report)  # e.g. the warehouse is unreachable: the file stays in the inbox, nothing else
        raise
    try:
        with ledger.heartbeat(engine, report.load_id):
            src = inspect(
                source,
                max_bytes=settings.max_file_bytes,
                fallback_encoding=settings.fallback_encoding,
                verify_utf8=False,
            )
            report.content_hash, report.file_bytes = src.sha256, src.size
            if not force:
                with engine.connect() as conn:
                    previous = already_loaded(conn, system, entity, src.sha256)
                if previous:
                    report.status = "duplicate_file"
                    report.error = f"identical content already loaded by {previous}"
                    with engine.begin() as conn:
                        ledger.finish(conn, report)
                    return report
            try:
                _load(src, system, entity, settings, engine, report, contract_id, force)
            except (
                EncodingUnverified
            ) as exc:  # rolled back: read again, with the encoding decided on every byte
                # The type only: a parse error's text quotes the record (personal data).
                log.info(
                    "load %s: %s is not plain UTF-8 after all (%s); reading it again",
                    report.load_id,
                    path.name,
                    type(exc.__cause__).__name__,
                )
                report.rows_read = 0
                src = inspect(
                    source, max_bytes=settings.max_file_bytes, fallback_encoding=settings.fallback_encoding
                )
                _load(src, system, entity, settings, engine, report, contract_id, force)
    except FileRejected as exc:
        report.status, report.reason_code, report.error = "rejected", exc.code, exc.message
        report.rows_inserted = report.rows_updated = report.rows_unchanged = report.rows_duplicate = 0
        # Rejected after some chunks were read (a damaged Parquet page): they were rolled back with the rest.
        report.rows_read = report.rows_quarantined = 0
        with engine.begin() as conn:
            ledger.finish(conn, report)
    except Exception as exc:
        _drop_snapshot(report)
        report.status, report.error = "failed", f"{type(exc).__name__}: {exc}"
        with engine.begin() as conn:
            ledger.finish(conn, report)
        raise
    log.info(
        "load %s %s/%s %s read=%d loaded=%d dup=%d quarantined=%d in %.2fs",
        report.load_id,
        system,
        entity,
        report.status,
        report.rows_read,
        report.rows_loaded,
        report.rows_duplicate,
        report.rows_quarantined,
        time.perf_counter() - t0,
    )
    return report


def _load(
    src: SourceFile,
    system: str,
    entity: str,
    settings: Settings,
    engine: sa.Engine,
    report: LoadReport,
    contract_id: str | None,
    tie_wins: bool = False,
) -> None:
    chunks = src.chunks(settings.chunk_rows)
    first = next(chunks, None)
    if first is None or (first.frame.empty and not first.failures):
        raise FileRejected("no_data_rows", "the file has no data records (header only or an empty list)")
    columns = src.columns or list(first.frame.columns)
    match = match_contract(system, entity, src.format, columns)
    if contract_id and contract_id != match.contract.id:
        pinned = get_contract(contract_id)
        match = ContractMatch(pinned, *column_drift(pinned, columns))
        if match.missing_required:
            raise FileRejected(
                "missing_required_columns",
                f"required columns missing for {pinned.id}: {match.missing_required}",
            )
    contract = match.contract
    report.contract, report.target_table = contract.id, contract.target
    mapper = ContractMapper(
        contract, max_field_bytes=settings.max_field_bytes, fallback_encoding=settings.fallback_encoding
    )
    drift = DriftStats()
    quarantined = 0
    with begin_write(engine) as conn:
        stage = CanonicalStage(conn, contract.target)

        def handle(chunk: RawChunk, mapped: MappedChunk) -> None:
            nonlocal quarantined
            report.rows_read += mapped.rows_in
            drift.merge(mapped.drift)
            frame, ref_failures = reference_failures(conn, contract, mapped.frame, chunk)
            failures = mapped.failures + ref_failures
            quarantined += len(failures)
            write_row_dead_letters(
                conn, dead_letter_rows(failures, contract.id, system, entity, src.path.name, report.load_id)
            )
            stage.add(frame, report.load_id, keep=mapped.absent)  # columns the file lacks stay as stored
            # Arrow's allocator keeps freed chunk buffers around; hand them back so memory tracks the chunk size.
            pa.default_memory_pool().release_unused()

        # Reading and mapping the next chunk (pandas/pyarrow, mostly outside the GIL) overlaps with staging the
        # current one (COPY: parsed by the Postgres server process), so both cores work on a large file.
        stream = itertools.chain([first], chunks)

        def read_and_map() -> tuple[RawChunk, MappedChunk] | None:
            chunk = next(stream, None)  # called by one worker, one call at a time
            return None if chunk is None else (chunk, mapper.map_chunk(chunk))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="map") as pool:
            pending = pool.submit(read_and_map)
            while (item := pending.result()) is not None:
                pending = pool.submit(read_and_map)
                handle(*item)
        counts = merge_keeping_erased(stage, tie_wins=tie_wins)
        report.rows_inserted, report.rows_updated = counts.inserted, counts.updated
        report.rows_unchanged, report.rows_duplicate = counts.unchanged, counts.duplicates
        report.rows_quarantined = quarantined
        report.drift = match.drift_findings() + drift.as_records()
        record_drift(conn, report.load_id, system, entity, contract.id, report.drift)
        report.status = "succeeded"
        if not report.balanced:  # an accounting bug must never pass silently
            raise AssertionError(f"load {report.load_id=} does not balance: {report.as_dict()}")
        ledger.finish(conn, report)
