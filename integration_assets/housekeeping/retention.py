"""Retention: remove bookkeeping rows older than ``policies.yaml``'s ``retention`` section.

What grows without bound otherwise: the ``processed_events`` ledger (one row per event ever applied) and
settled dead letters (replayed or discarded, with their raw records). Pending dead letters, canonical rows,
the loads ledger and the dead-letter audit trail are never touched. Rows go in batches, one transaction
each, so a drain or a load waits at most one batch. Plain Python: the ``housekeeping`` job and
``integration-assets db prune`` call :func:`prune`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.policies import RetentionPolicy, format_duration
from integration_assets.warehouse.ledger import utcnow
from integration_assets.warehouse.schema import dead_letters, processed_events

BATCH_ROWS = 10_000
SETTLED = ("replayed", "discarded")


@dataclass
class PruneReport:
    dry_run: bool
    cutoffs: dict[str, str] = field(default_factory=dict)  # table -> ISO cutoff
    retention: dict[str, str] = field(default_factory=dict)  # table -> "90d"
    removed: dict[str, int] = field(default_factory=dict)  # rows removed (or, dry run, that would be)

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "retention": self.retention,
            "cutoffs": self.cutoffs,
            "removed": self.removed,
            "total": sum(self.removed.values()),
        }


def _targets(policy: RetentionPolicy) -> list[tuple[str, sa.Table, list[sa.Column], timedelta, Any]]:
    """(name, table, key columns, retention, predicate of a row past it given the cutoff)."""
    p, d = processed_events.c, dead_letters.c
    return [
        (
            "processed_events",
            processed_events,
            [p.source, p.event_id],
            policy.processed_events,
            lambda cut: p.applied_at < cut,
        ),
        # last_seen too: a settled record that failed again recently is still of interest.
        (
            "dead_letters",
            dead_letters,
            [d.id],
            policy.settled_dead_letters,
            lambda cut: sa.and_(d.status.in_(SETTLED), d.resolved_at < cut, d.last_seen < cut),
        ),
    ]


def prune(
    engine: sa.Engine,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> PruneReport:
    """Delete (or, ``dry_run``, count) the rows past their retention; one transaction per batch."""
    now = now or utcnow()
    report = PruneReport(dry_run=dry_run)
    for name, table, key, keep_for, past in _targets(policy):
        cutoff = now - keep_for
        old = past(cutoff)
        report.cutoffs[name], report.retention[name] = cutoff.isoformat(), format_duration(keep_for)
        if dry_run:
            with engine.connect() as conn:
                report.removed[name] = int(
                    conn.execute(sa.select(sa.func.count()).select_from(table).where(old)).scalar_one()
                )
            continue
        target = key[0] if len(key) == 1 else sa.tuple_(*key)
        removed = 0
        while True:
            batch = sa.select(*key).where(old).limit(batch_rows)
            with engine.begin() as conn:
                n = conn.execute(sa.delete(table).where(target.in_(batch))).rowcount
            removed += n
            if n < batch_rows:
                break
        report.removed[name] = removed
    return report
