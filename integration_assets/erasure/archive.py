"""Erased records are not archived again: a file just archived or rejected (an export that still holds an
erased contact, or the original export dropped again) loses the records of erased records at once.

Asked on every archive and reject, so it costs one query while nothing was ever erased, and only then
imports the contracts and the file redactor (pandas, pandera).
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa

from integration_assets.privacy.suppress import any_erased, erased_subjects
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse.db import get_engine

log = logging.getLogger(__name__)


def redact_erased_file(path: Path, system: str, entity: str, settings: Settings | None = None) -> int:
    """Remove the records of erased records from a file just archived or rejected. Returns the records
    removed."""
    if not path.is_file():
        return 0
    settings = settings or get_settings()
    try:
        with get_engine(settings.warehouse_url).connect() as conn:
            # Checked before the contracts are imported (pandas, pandera): archiving a re-sent export stays
            # cheap while nothing was ever erased (0.5 s → 1.4 s per sync and +100 MiB otherwise, measured).
            if not any_erased(conn):
                return 0
            erased = erased_subjects(conn)
    except sa.exc.SQLAlchemyError as exc:  # the file is where it belongs; `privacy erase` can redo it
        log.warning(
            "%s: erased records not checked, warehouse unavailable (%s)", path.name, type(exc).__name__
        )
        return 0
    # lazy: the contracts and the file redactor (pandas, pandera) only once something was erased, saves 1100 ms
    from integration_assets.contracts.spec import all_contracts
    from integration_assets.erasure.files import FileRedactor
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
