"""Retention: remove bookkeeping rows older than ``policies.yaml``'s ``retention`` section.

What grows without bound otherwise: the ``processed_events`` ledger (one row per event ever applied) and
settled dead letters (replayed or discarded, with their raw records). Pending dead letters, canonical rows,
the loads ledger and the dead-letter audit trail are never touched. Rows go in batches, one transaction
each, so a drain or a load waits at most one batch. Plain Python: the ``housekeeping`` job and
``integration-assets db prune`` call :func:`prune`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from integration_assets.events.tables import processed_events
from integration_assets.quality.policies import RetentionPolicy, format_duration
from integration_assets.warehouse.ledger import utcnow
from integration_assets.warehouse.schema import dead_letters

BATCH_ROWS = 10_000
SETTLED = ("replayed", "discarded")


@dataclass
class PruneReport:
    dry_run: bool
    cutoffs: dict[str, str] = field(default_factory=dict)  # table -> ISO cutoff
    retention: dict[str, str] = field(default_factory=dict)  # table -> "90d"
    removed: dict[str, int] = field(default_factory=dict)  # rows removed (or, dry run, that would be)

    def as_dict(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "retention": self.retention, "cutoffs": self.cutoffs,
                "removed": self.removed, "total": sum(self.removed.values())}


def _targets(policy: RetentionPolicy, now: datetime) -> list[tuple[str, sa.Table, list[sa.Column], sa.ColumnElement[bool], str]]:
    pe_cut = now - policy.processed_events
    dl_cut = now - policy.settled_dead_letters
    d = dead_letters.c
    return [
        ("processed_events", processed_events, [processed_events.c.source, processed_events.c.event_id],
         processed_events.c.applied_at < pe_cut, pe_cut.isoformat()),
        # last_seen too: a settled record that failed again recently is still of interest.
        ("dead_letters", dead_letters, [d.id],
         sa.and_(d.status.in_(SETTLED), d.resolved_at < dl_cut, d.last_seen < dl_cut), dl_cut.isoformat()),
    ]


def prune(engine: sa.Engine, policy: RetentionPolicy, *, now: datetime | None = None, dry_run: bool = False,
          batch_rows: int = BATCH_ROWS) -> PruneReport:
    """Delete (or, ``dry_run``, count) the rows past their retention; one transaction per batch."""
    now = now or utcnow()
    report = PruneReport(dry_run=dry_run)
    for name, table, key, old, cutoff in _targets(policy, now):
        report.cutoffs[name] = cutoff
        report.retention[name] = format_duration(policy.processed_events if name == "processed_events"
                                                  else policy.settled_dead_letters)
        if dry_run:
            with engine.connect() as conn:
                report.removed[name] = int(conn.execute(sa.select(sa.func.count()).select_from(table).where(old))
                                           .scalar_one())
            continue
        removed = 0
        while True:
            batch = sa.select(*key).where(old).limit(batch_rows)
            target = key[0] if len(key) == 1 else sa.tuple_(*key)
            with engine.begin() as conn:
                n = conn.execute(sa.delete(table).where(target.in_(batch))).rowcount
            removed += n
            if n < batch_rows:
                break
        report.removed[name] = removed
    return report
