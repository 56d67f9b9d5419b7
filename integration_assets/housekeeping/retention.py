"""Retention: remove bookkeeping rows older than ``policies.yaml``'s ``retention`` section.

What grows without bound otherwise: the ``processed_events`` ledger (one row per event ever applied) and
settled dead letters (replayed or discarded, with their raw records). Pending dead letters, canonical rows,
the loads ledger and the dead-letter audit trail are never touched. Rows go in batches, one transaction
each, so a drain or a load waits at most one batch. Each table's owner deletes its own rows
(``events.ledger.prune``, ``dead_letters.store.prune_settled``); this layer sits above them. Plain Python: the ``housekeeping`` job and
``integration-assets db prune`` call :func:`prune`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa

from integration_assets.dead_letters import store as dead_letter_store
from integration_assets.dead_letters.queries import count_settled_before
from integration_assets.events import ledger as event_ledger
from integration_assets.policies import RetentionPolicy, format_duration
from integration_assets.warehouse.ledger import utcnow

BATCH_ROWS = 10_000


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


_Count = Callable[[sa.Connection, datetime], int]


class _Prune(Protocol):
    def __call__(self, conn: sa.Connection, cutoff: datetime, /, *, limit: int) -> int: ...


def _targets(policy: RetentionPolicy) -> list[tuple[str, timedelta, _Count, _Prune]]:
    """(name, retention, count of the rows past it, delete a batch of them): each table's owner prunes it."""
    return [
        ("processed_events", policy.processed_events, event_ledger.count_applied_before, event_ledger.prune),
        (
            "dead_letters",
            policy.settled_dead_letters,
            count_settled_before,
            dead_letter_store.prune_settled,
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
    for name, keep_for, count, delete in _targets(policy):
        cutoff = now - keep_for
        report.cutoffs[name], report.retention[name] = cutoff.isoformat(), format_duration(keep_for)
        if dry_run:
            with engine.connect() as conn:
                report.removed[name] = count(conn, cutoff)
            continue
        removed = 0
        while True:
            with engine.begin() as conn:
                n = delete(conn, cutoff, limit=batch_rows)
            removed += n
            if n < batch_rows:
                break
        report.removed[name] = removed
    return report
