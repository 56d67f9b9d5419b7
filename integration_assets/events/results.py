"""What a batch of events did (``BatchResult``), added up over a drain."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_COUNTS = ("events_in", "applied", "stale", "ignored", "duplicates", "dead_lettered", "retried", "ack_failed")


@dataclass
class BatchResult:
    """What one batch (or a whole drain, when added up) did; every delivery is counted exactly once in
    applied + stale + ignored + duplicates + dead_lettered + retried."""

    batch_id: str
    events_in: int = 0
    applied: int = 0
    stale: int = 0
    ignored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    ack_failed: int = 0  # committed, but the ack did not reach the queue: they come back as duplicates
    tables: Counter[str] = field(default_factory=Counter)  # events applied per canonical table
    reasons: Counter[str] = field(default_factory=Counter)  # dead letters per check
    acked_in_transaction: bool = False

    @property
    def balanced(self) -> bool:
        settled = (
            self.applied + self.stale + self.ignored + self.duplicates + self.dead_lettered + self.retried
        )
        return settled == self.events_in

    def add(self, other: BatchResult) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tables.update(other.tables)
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            **{name: getattr(self, name) for name in _COUNTS},
            "tables": dict(self.tables),
            "dead_letter_reasons": dict(self.reasons),
        }
