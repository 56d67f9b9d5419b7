"""Drift met while mapping: per (kind, column), rows affected and a few sample values.

Kinds: ``unknown_value`` (a dropdown value the contract does not know), ``format_change`` (a date in no
declared format), ``type_change`` (text where a number was expected). Column drift of a whole file (new and
missing columns) is decided against the contract before mapping (``contracts.matching``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SAMPLE_LIMIT = 5


@dataclass
class DriftStats:
    """Per (kind, column): rows affected and a few distinct sample values (never for PII columns)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    samples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, kind: str, column: str, values: pd.Series, pii: bool) -> None:
        if len(values) == 0:
            return
        key = (kind, column)
        self.counts[key] = self.counts.get(key, 0) + len(values)
        bucket = self.samples.setdefault(key, [])
        if pii:
            if not bucket:
                bucket.append("<withheld: PII column>")
            return
        for v in pd.unique(values.astype(str)):
            if len(bucket) >= SAMPLE_LIMIT:
                break
            if v not in bucket:
                bucket.append(str(v)[:200])

    def merge(self, other: DriftStats) -> None:
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
            bucket = self.samples.setdefault(key, [])
            for v in other.samples.get(key, []):
                if v not in bucket and len(bucket) < SAMPLE_LIMIT:
                    bucket.append(v)

    def as_records(self) -> list[dict[str, Any]]:
        return [
            {"kind": k, "column": c, "rows": n, "sample": self.samples.get((k, c), [])}
            for (k, c), n in sorted(self.counts.items())
        ]
