"""Apply a mapping contract to a chunk of raw records, vectorised, and split good rows from bad ones.

Every input record ends in exactly one of two places: the returned canonical frame (validated by the
canonical pandera model) or a ``RowFailure`` carrying the stage, the check, the offending column and value,
and the raw record, ready to become a dead letter. Drift (unknown dropdown values, changed formats) is
counted per column as it is met.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors as pa_errors
import pyarrow as pa

from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.contracts.records import ParseFailure, RawChunk, restore_bad_bytes
from integration_assets.contracts.spec import Contract
from integration_assets.mapping.drift import DriftStats
from integration_assets.mapping.fields import FieldMappers
from integration_assets.mapping.results import (
    MappedChunk,
    MappingBug,
    RowErrors,
    RowFailure,
    display_value,
    json_safe,
)
from integration_assets.mapping.values import BAD_BYTES_RE, ODD_CHARS_RE, apply_derived, plain_text, utc_ns
from integration_assets.warehouse.schema import LATE_COLUMNS


class ContractMapper(FieldMappers):
    """Maps raw chunks for one contract. Stateless between chunks except for the compiled value maps."""

    def __init__(
        self, contract: Contract, *, max_field_bytes: int = 1 << 20, fallback_encoding: str = "cp1252"
    ) -> None:
        self.contract = contract
        self.model = CANONICAL_MODELS[contract.target]
        self.schema = self.model.to_schema()
        self.columns = list(self.schema.columns)
        self.max_field_bytes = max_field_bytes
        self.fallback = fallback_encoding
        self._enum_arrays: dict[str, tuple[pa.Array, pa.Array]] = {}
        for src, spec in contract.fields.items():
            if spec.type == "enum":
                m = {k.lower() if spec.case_insensitive else k: v for k, v in spec.values.items()}
                # The canonical values themselves are accepted too (an API export sends internal values).
                for v in spec.values.values():
                    m.setdefault(v.lower() if spec.case_insensitive else v, v)
                self._enum_arrays[src] = (
                    pa.array(list(m), pa.large_string()),
                    pa.array(list(m.values()), pa.large_string()),
                )
        self._memo = threading.local()  # .stripped: (series, series.str.strip()) of the field being mapped
        self._text_targets = [
            c for c, col in self.schema.columns.items() if "string" in str(col.dtype).lower()
        ]

    # -- public -------------------------------------------------------------------------------------
    def map_chunk(self, chunk: RawChunk) -> MappedChunk:
        raw = chunk.frame
        n = len(raw)
        errors = RowErrors(n)
        drift = DriftStats()
        out: dict[str, pd.Series] = {}
        index = pd.RangeIndex(n)
        raw = raw.reset_index(drop=True)

        absent: set[str] = set()
        for src, spec in self.contract.fields.items():
            if src in raw.columns:
                series = raw[src]
            else:
                series = pd.Series([None] * n, index=index, dtype=object)
                if self.contract.on_missing == "keep" and not spec.absent_ok and not spec.required:
                    absent.add(spec.to)
            out[spec.to] = self._map_field(src, spec, series, errors, drift)

        for col, value in self.contract.defaults.items():
            out[col] = pd.Series([value] * n, index=index)
        for col in self.columns:
            if col not in out and col in LATE_COLUMNS:
                out[col] = pd.Series([None] * n, index=index, dtype=object)
        self._memo.stripped = None
        apply_derived(self.contract, out)

        frame = pd.DataFrame({c: out[c] for c in self.columns}, index=index)
        frame = self._to_model_dtypes(frame)
        self._text_checks(frame, errors)

        bad = errors.any()
        # The whole frame is validated, rows already failed included (their extra findings come after the
        # first), so the good rows are taken once, at the end: each take copies every column.
        vbad = np.zeros(n, dtype=bool)
        vfindings: dict[int, list[dict[str, Any]]] = {}
        for i, finding in self._validate(frame):
            vbad[i] = True
            vfindings.setdefault(i, []).append(finding)

        failures = self._failures(raw, chunk, frame, errors, bad | vbad, vfindings)
        failures.extend(self._parse_failures(chunk.failures))
        keep = np.flatnonzero(~(bad | vbad))
        result = frame.iloc[keep].reset_index(drop=True) if len(keep) < n else frame
        result["source_system"] = self.contract.system
        result["mapping_version"] = self.contract.id
        result["_pos"] = chunk.positions[keep] if len(chunk.positions) == n else keep + 1
        return MappedChunk(
            result, failures, drift, rows_in=n + len(chunk.failures), absent=self._absent_derived(absent)
        )

    def _absent_derived(self, absent: set[str]) -> frozenset[str]:
        """``absent`` plus the derived columns computed from an absent column (their stored value stays too)."""
        if not absent:
            return frozenset()
        out = set(absent)
        for col, d in self.contract.derived.items():
            inputs = (
                (d.equals[0],) if d.equals else (d.is_in[0],) if d.is_in else d.coalesce or d.latest or ()
            )
            if any(i in absent for i in inputs):
                out.add(col)
        return frozenset(out)

    # -- frame-level ------------------------------------------------------------------------------
    def _to_model_dtypes(self, frame: pd.DataFrame) -> pd.DataFrame:
        for name, col in self.schema.columns.items():
            dt = str(col.dtype).lower()
            if "string" in dt:
                frame[name] = frame[name].astype(pd.StringDtype("pyarrow"))
            elif "datetime" in dt:
                frame[name] = utc_ns(frame[name])
            elif "bool" in dt:
                frame[name] = frame[name].astype("boolean")
            elif "float" in dt:
                frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        return frame

    def _text_checks(self, frame: pd.DataFrame, errors: RowErrors) -> None:
        """Values Postgres cannot store (NUL) or that carry undecodable bytes or are oversized, per row."""
        for col in self._text_targets:
            s = frame[col]
            if plain_text(s, self.max_field_bytes):
                continue
            src = self.contract.source_for(col) or col
            # One regex pass finds both rare cases; they are told apart only on the rows it flags.
            odd = s.str.contains(ODD_CHARS_RE, regex=True).fillna(False).to_numpy()
            if odd.any():
                flagged = s.where(odd)
                nul = flagged.str.contains("\x00", regex=False).fillna(False).to_numpy()
                errors.add(
                    nul,
                    "map",
                    "nul_byte",
                    src,
                    s,
                    f"{src!r} contains a NUL byte, which the warehouse cannot store",
                )
                badb = flagged.str.contains(BAD_BYTES_RE, regex=True).fillna(False).to_numpy()
                if badb.any():
                    shown = (
                        s.astype(object)
                        .where(badb, None)
                        .map(lambda v: restore_bad_bytes(v, self.fallback), na_action="ignore")
                    )
                    errors.add(
                        badb,
                        "parse",
                        "invalid_encoding",
                        src,
                        shown,
                        f"{src!r} has bytes that are not valid UTF-8 (shown as {self.fallback}): {{value!r}}",
                    )
            big = (s.str.len() > self.max_field_bytes).fillna(False).to_numpy()
            errors.add(
                big,
                "map",
                "value_too_large",
                src,
                s,
                f"{src!r} value is larger than the {self.max_field_bytes}-byte field limit",
            )

    def _validate(self, frame: pd.DataFrame) -> list[tuple[int, dict[str, Any]]]:
        """(row, finding) for every row the canonical model refuses; ``frame`` has a RangeIndex."""
        if frame.empty:
            return []
        try:
            self.model.validate(frame, lazy=True)
            return []
        except pa_errors.SchemaErrors as exc:
            fc = exc.failure_cases
        rowless = fc[fc["index"].isna()]
        if not rowless.empty:
            raise MappingBug(
                f"contract {self.contract.id} produced a frame that breaks {self.contract.target} as a whole: "
                + "; ".join(f"{r.column}: {r.check} ({r.failure_case})" for r in rowless.itertuples())
            )
        found = []
        for r in fc.itertuples():
            col = (
                None
                if r.column is None or (isinstance(r.column, float) and math.isnan(r.column))
                else str(r.column)
            )
            src = (self.contract.source_for(col) if col else None) or col
            found.append(
                (
                    int(r.index),
                    {
                        "stage": "validate",
                        "check": f"{col}:{r.check}",
                        "column": src,
                        "value": display_value(r.failure_case),
                        "reason": f"{col} fails {r.check} in model {self.contract.target}: {display_value(r.failure_case)!r}",
                    },
                )
            )
        return found

    # -- failures -----------------------------------------------------------------------------------
    def _failures(
        self,
        raw: pd.DataFrame,
        chunk: RawChunk,
        frame: pd.DataFrame,
        errors: RowErrors,
        bad: np.ndarray,
        vfindings: dict[int, list[dict[str, Any]]],
    ) -> list[RowFailure]:
        idx = np.flatnonzero(bad)
        if len(idx) == 0:
            return []
        # Raw records as JSON text, serialised in C by pandas (the hot part when 1% of a large file is bad).
        texts = (
            raw.iloc[idx]
            .to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
            .splitlines()
        )
        keys = (
            frame["source_id"]
            .iloc[idx]
            .astype(object)
            .where(frame["source_id"].iloc[idx].notna(), None)
            .tolist()
        )
        key_src = self.contract.source_for("source_id")
        out = []
        for j, i in enumerate(idx):
            findings = errors.for_row(int(i)) + vfindings.get(int(i), [])
            first = findings[0]
            rec: dict[str, Any] | str = texts[j]
            if any(f["check"] == "invalid_encoding" for f in findings):
                row = {k: json_safe(v) for k, v in raw.iloc[int(i)].to_dict().items()}
                rec = {
                    k: restore_bad_bytes(v, self.fallback) if isinstance(v, str) else v
                    for k, v in row.items()
                }
            key = keys[j]
            if key is None and key_src:
                key = (rec if isinstance(rec, dict) else json.loads(rec)).get(key_src)
            pos = int(chunk.positions[i]) if len(chunk.positions) == len(raw) else int(i) + 1
            out.append(
                RowFailure(
                    position=pos,
                    natural_key=None if key is None else str(key)[:255],
                    stage=first["stage"],
                    check=first["check"],
                    column=first["column"],
                    value=first["value"],
                    reason=first["reason"],
                    raw=rec,
                    errors=tuple(findings),
                )
            )
        return out

    def _parse_failures(self, failures: list[ParseFailure]) -> list[RowFailure]:
        return [
            RowFailure(
                position=f.position,
                natural_key=None,
                stage="parse",
                check=f.check,
                column=None,
                value=None,
                reason=f.reason,
                raw=f.raw,
                errors=({"stage": "parse", "check": f.check, "reason": f.reason},),
            )
            for f in failures
        ]
