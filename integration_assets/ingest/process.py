"""Load one inbox file and settle it: the load (``ingest.load``) reads a snapshot of the file
(``<data dir>/processing/<load id>/``), then the file moves to ``archive/`` or ``rejected/`` (``ingest.archive``).

What is archived is exactly what was loaded. If the file changed during its load, the snapshot goes to the
archive and the changed file stays in the inbox, to be loaded again as a new version (the merge is
idempotent, so rows loaded twice change nothing). A transient failure (the warehouse is down) raises and
leaves the file in the inbox.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import sqlalchemy as sa

from integration_assets.connectors.files.hashing import content_hash
from integration_assets.contracts.spec import known_entities
from integration_assets.ingest.archive import archive, reject, reject_misplaced
from integration_assets.ingest.inbox import InboxFile, processing_dir
from integration_assets.ingest.load import ingest_file
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.ledger import LoadReport

log = logging.getLogger(__name__)


def process(
    f: InboxFile,
    *,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
    run_id: str | None = None,
    force: bool = False,
) -> LoadReport:
    """Load one inbox file and move it to archive/ or rejected/. Transient errors propagate, file stays.

    ``force``: load content that was loaded before again, under the current contract (``ingest_file``), with a
    new ledger row; the claim on the content still admits one load of it at a time."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    known = {(s, e) for s, e, _ in known_entities()}
    if (f.system, f.entity) not in known:
        return reject_misplaced(f, known, settings=settings, engine=engine, run_id=run_id)
    report = ingest_file(
        f.path,
        f.system,
        f.entity,
        settings=settings,
        engine=engine,
        run_id=run_id,
        force=force,
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
