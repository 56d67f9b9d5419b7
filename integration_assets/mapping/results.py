"""What mapping a chunk produces: the canonical frame (``MappedChunk``) and one ``RowFailure`` per bad record.

``RowErrors`` collects row-level findings as boolean masks and expands them into records only for bad rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from integration_assets.errors import IntegrationError
from integration_assets.mapping.drift import DriftStats


class MappingBug(IntegrationError):
    """The mapped frame breaks the canonical model in a way no single row explains (a contract or code bug)."""


@dataclass(frozen=True)
class RowFailure:
    """One quarantined record: why, where, and the record itself. Becomes one dead letter."""

    position: int
    natural_key: str | None
    stage: str  # parse | map | validate | load
    check: str
    column: str | None
    value: str | None
    reason: str
    raw: dict[str, Any] | str
    errors: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        # Postgres text cannot hold NUL: a bad record that contains one must still be storable as a dead
        # letter, so it is shown as the JSON escape \u0000 (dicts and errors are stored as escaped JSON).
        for name in ("natural_key", "column", "value", "reason", "raw"):
            v = getattr(self, name)
            if isinstance(v, str) and "\x00" in v:
                object.__setattr__(self, name, v.replace("\x00", "\\u0000"))


@dataclass
class MappedChunk:
    frame: pd.DataFrame  # canonical columns + source_system, mapping_version, _pos (the writer adds row_hash)
    failures: list[RowFailure]
    drift: DriftStats
    rows_in: int
    # Canonical columns the chunk does not carry (its source column is absent and the contract keeps stored
    # values): the writer leaves them as stored. Empty under on_missing: null.
    absent: frozenset[str] = frozenset()


class RowErrors:
    """Row-level findings collected as boolean masks (vectorised), expanded into records only for bad rows."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.items: list[tuple[np.ndarray, str, str, str | None, pd.Series | None, str]] = []

    def add(
        self, mask: Any, stage: str, check: str, column: str | None, values: pd.Series | None, message: str
    ) -> None:
        m = np.asarray(mask, dtype=bool)
        if m.any():
            self.items.append((m, stage, check, column, values, message))

    def any(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for m, *_ in self.items:
            out |= m
        return out

    def for_row(self, i: int) -> list[dict[str, Any]]:
        found = []
        for m, stage, check, column, values, message in self.items:
            if m[i]:
                value = None if values is None else display_value(values.iloc[i])
                found.append(
                    {
                        "stage": stage,
                        "check": check,
                        "column": column,
                        "value": value,
                        "reason": message.format(value=value),
                    }
                )
        return found


def display_value(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    s = v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, list | dict) else str(v)
    return s[:500]


def json_safe(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    return v
