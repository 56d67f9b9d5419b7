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
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors as pa_errors
import pyarrow as pa
import pyarrow.compute as pc

from integration_assets.connectors.files import (
    BAD_BYTE_MAX,
    BAD_BYTE_MIN,
    ParseFailure,
    RawChunk,
    restore_bad_bytes,
)
from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.contracts.spec import Contract, FieldSpec
from integration_assets.errors import IntegrationError
from integration_assets.mapping import ids
from integration_assets.warehouse.schema import LATE_COLUMNS

_ID_RE = r"^[A-Za-z0-9_\-.:/]{1,64}$"
_BAD_BYTES_RE = f"[{BAD_BYTE_MIN}-{BAD_BYTE_MAX}]"
_ODD_CHARS_RE = f"[\x00{BAD_BYTE_MIN}-{BAD_BYTE_MAX}]"
SAMPLE_LIMIT = 5


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


@dataclass
class MappedChunk:
    frame: pd.DataFrame  # canonical columns + source_system, mapping_version, _pos (the writer adds row_hash)
    failures: list[RowFailure]
    drift: DriftStats
    rows_in: int
    # Canonical columns the chunk does not carry (its source column is absent and the contract keeps stored
    # values): the writer leaves them as stored. Empty under on_missing: null.
    absent: frozenset[str] = frozenset()


class _Errors:
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
                value = None if values is None else _display(values.iloc[i])
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


def _display(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    s = v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, list | dict) else str(v)
    return s[:500]


def _json_safe(v: Any) -> Any:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return v


def _as_text(s: pd.Series) -> pd.Series:
    """Source values as a nullable string series (CSV strings pass through; JSON scalars are stringified)."""
    if isinstance(s.dtype, pd.StringDtype):
        return s
    if s.dtype == object:

        def conv(v: Any) -> Any:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, float) and v.is_integer():
                return str(int(v))
            if isinstance(v, list | dict):
                return json.dumps(v)
            return str(v)

        return s.map(conv, na_action="ignore").astype(pd.StringDtype("pyarrow"))
    if pd.api.types.is_float_dtype(s.dtype):
        out = s.map(lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)), na_action="ignore")
        return out.astype(pd.StringDtype("pyarrow"))
    return s.astype(pd.StringDtype("pyarrow"))


# First UTF-8 bytes of what the per-value checks look for: NUL and the private-use code points that carry
# undecodable bytes (see connectors.files).
_ODD_LEADS = sorted({b"\x00", BAD_BYTE_MIN.encode()[:1], BAD_BYTE_MAX.encode()[:1]})


def _plain_text(s: pd.Series, max_bytes: int) -> bool:
    """True when no value of ``s`` can hold a NUL or a carried bad byte or exceed ``max_bytes`` bytes.

    Scans Arrow's value buffers once in C instead of a regex per value; ``False`` only means "look closer"
    (a lead byte also starts other characters), so the exact per-value checks decide.
    """
    if not isinstance(s.dtype, pd.StringDtype) or s.dtype.storage != "pyarrow":
        return False
    for chunk in s.array.__arrow_array__().chunks:
        data = chunk.buffers()[2]
        if data is None:
            continue
        if len(data) > max_bytes:
            longest = pc.max(pc.binary_length(chunk)).as_py()
            if longest is not None and longest > max_bytes:
                return False
        raw = data.to_pybytes()  # a copy, then memchr per lead byte: faster than any elementwise test
        if any(lead in raw for lead in _ODD_LEADS):
            return False
    return True


def _lookup(key: pd.Series, keys: pa.Array, values: pa.Array) -> pd.Series:
    """``key.map(dict(zip(keys, values)))`` in Arrow (pandas maps element by element in Python: ~6x slower)."""
    arr = pa.array(key.array, pa.large_string())
    out = pc.take(values, pc.index_in(arr, value_set=keys))
    return pd.Series(pd.array(out, dtype=pd.StringDtype("pyarrow")), index=key.index)


def _apply_transforms(t: pd.Series, transforms: tuple[str, ...]) -> pd.Series:
    for tr in transforms:
        if tr == "strip":
            t = t.str.strip()
        elif tr == "lower":
            t = t.str.lower()
        elif tr == "upper":
            t = t.str.upper()
        elif tr == "collapse_spaces":
            t = t.str.replace(r"\s+", " ", regex=True)
    return t


def apply_derived(contract: Contract, columns: MutableMapping[str, Any]) -> None:
    """Compute the contract's derived canonical columns from already-mapped ones (a dict of Series or a frame)."""
    for col, d in contract.derived.items():
        if d.equals is not None:
            base, val = d.equals
            columns[col] = columns[base].eq(val).astype("boolean")
        elif d.is_in is not None:
            base, vals = d.is_in
            columns[col] = columns[base].isin(list(vals)).astype("boolean")
        elif d.coalesce is not None:
            acc = columns[d.coalesce[0]]
            for other in d.coalesce[1:]:
                acc = acc.fillna(columns[other])
            columns[col] = acc
        elif d.latest is not None:
            parts = [columns[c] for c in d.latest]
            latest = parts[0]
            for other in parts[1:]:
                latest = latest.where(~(other > latest).fillna(False) & latest.notna(), other)
            columns[col] = latest


def _utc_ns(s: pd.Series) -> pd.Series:
    """``s`` as datetime64[ns, UTC]. Values that are already zone-aware are converted directly:
    ``pd.to_datetime`` turns them into Python Timestamps one by one (its cache check) first."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


class ContractMapper:
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
        errors = _Errors(n)
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

    # -- fields -------------------------------------------------------------------------------------
    def _strip(self, t: pd.Series) -> pd.Series:
        """``t.str.strip()`` once per source column: the empty-value test and every parser start with it.

        Keyed on the series object itself (kept alive by the memo), per thread: a mapper may be shared."""
        memo = getattr(self._memo, "stripped", None)
        if memo is None or memo[0] is not t:
            memo = self._memo.stripped = (t, t.str.strip())
        return memo[1]

    def _missing(self, series: pd.Series, false_is_null: bool = False) -> pd.Series:
        miss = series.isna()
        if series.dtype == object:
            if false_is_null:
                miss = miss | series.map(lambda v: v is False)
            miss = miss | series.map(lambda v: isinstance(v, str) and v.strip() in self.contract.empty_values)
        elif isinstance(series.dtype, pd.StringDtype):
            stripped = self._strip(series)
            miss = miss | stripped.isin(list(self.contract.empty_values))
        return miss.fillna(True).astype(bool)

    def _map_field(
        self, src: str, spec: FieldSpec, s: pd.Series, errors: _Errors, drift: DriftStats
    ) -> pd.Series:
        # Odoo's false means "empty" for char/date/many2one fields but is a real value for boolean fields.
        missing = self._missing(s, self.contract.odoo_false_is_null and spec.type != "boolean")
        present = ~missing
        if spec.required:
            errors.add(missing, "map", "required", src, s, f"required value missing in {src!r}")
        mapper = getattr(self, f"_type_{spec.type}")
        result, bad, check, message = mapper(src, spec, s, present, drift)
        if bad is not None:
            errors.add(bad, "map", check, src, s, message)
        return result

    def _null_like(self, n: int, dtype: str) -> pd.Series:
        return pd.Series(pd.array([None] * n, dtype=dtype))

    def _type_string(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        t, transforms = _as_text(s), spec.transform
        if transforms[:1] == ("strip",):
            t, transforms = self._strip(t), transforms[1:]
        t = _apply_transforms(t, transforms)
        t = t.where(present, None)
        bad = None
        if spec.max_length:
            bad = (t.str.len() > spec.max_length).fillna(False).to_numpy()
        return t, bad, "max_length", f"{src!r} longer than {spec.max_length} characters"

    def _type_id(self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats) -> Any:
        t = self._strip(_as_text(s)).where(present, None)
        if spec.id_type is not None:
            return self._typed_ids(src, spec.id_type, t)
        ok = t.str.match(_ID_RE).fillna(True)
        return t.where(ok, None), (~ok).to_numpy(), "invalid_id", f"{src!r} is not a valid id: {{value!r}}"

    @staticmethod
    def _typed_ids(src: str, id_type: str, t: pd.Series) -> Any:
        """Canonical ids (integration_assets.mapping.ids); a value that is not one is quarantined."""
        out, bad = ids.normalise(t, id_type)
        return out, bad, "invalid_id", f"{src!r} is not a valid {id_type} id: {{value!r}}"

    def _numeric(self, s: pd.Series, present: pd.Series) -> tuple[pd.Series, np.ndarray]:
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            num = s.astype("float64")
        else:
            if s.dtype == object:
                # Booleans are not numbers (JSON true would otherwise become 1.0).
                s = s.map(lambda v: "not-a-number" if isinstance(v, bool) else v)
            num = pd.to_numeric(self._strip(_as_text(s)), errors="coerce").astype("float64")
        num = num.where(present.to_numpy(), np.nan)
        bad = (present.to_numpy() & num.isna().to_numpy()) | np.isinf(num.to_numpy())
        return num, bad

    def _type_decimal(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        num, bad = self._numeric(s, present)
        drift.add("type_change", src, s[bad], pii=spec.pii) if bad.any() else None
        return num, bad, "not_a_number", f"{src!r} is not a number: {{value!r}}"

    def _type_integer(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        num, bad = self._numeric(s, present)
        frac = num.notna().to_numpy() & (num.fillna(0) % 1 != 0).to_numpy()
        bad = bad | frac
        drift.add("type_change", src, s[bad], pii=spec.pii) if bad.any() else None
        return num, bad, "not_an_integer", f"{src!r} is not an integer: {{value!r}}"

    def _type_boolean(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        t = self._strip(_as_text(s)).str.lower()
        out = pd.Series(pd.array([None] * len(s), dtype="boolean"))
        is_true = t.isin(list(spec.true_values)).fillna(False).to_numpy()
        is_false = t.isin(list(spec.false_values)).fillna(False).to_numpy()
        out[is_true] = True
        out[is_false] = False
        bad = present.to_numpy() & ~is_true & ~is_false
        return out, bad, "not_a_boolean", f"{src!r} is not a boolean: {{value!r}}"

    def _parse_datetimes(
        self, spec: FieldSpec, s: pd.Series, present: pd.Series
    ) -> tuple[pd.Series, np.ndarray]:
        n = len(s)
        result_ns = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)  # NaT
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            ts = s if getattr(s.dt, "tz", None) is not None else s.dt.tz_localize(spec.tz)
            return _utc_ns(ts), np.zeros(n, dtype=bool)
        text = self._strip(_as_text(s))
        todo = present.to_numpy().copy()
        for fmt in spec.formats:
            if not todo.any():
                break
            part = text[todo]
            if fmt in ("epoch_ms", "epoch_s"):
                num = pd.to_numeric(part, errors="coerce")
                parsed = pd.to_datetime(
                    num, unit="ms" if fmt == "epoch_ms" else "s", utc=True, errors="coerce"
                )
            elif fmt == "iso8601":
                parsed = pd.to_datetime(part, format="ISO8601", utc=True, errors="coerce")
                naive_mask = ~part.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True).fillna(False)
                if naive_mask.any() and spec.tz != "UTC":
                    local = pd.to_datetime(part[naive_mask], format="ISO8601", errors="coerce")
                    parsed[naive_mask] = local.dt.tz_localize(
                        spec.tz, ambiguous="NaT", nonexistent="NaT"
                    ).dt.tz_convert("UTC")
            else:
                aware = "%z" in fmt
                parsed = pd.to_datetime(part, format=fmt, errors="coerce", utc=aware or spec.tz == "UTC")
                if not aware and spec.tz != "UTC":
                    parsed = parsed.dt.tz_localize(spec.tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(
                        "UTC"
                    )
            values = parsed.astype("datetime64[ns, UTC]").array.asi8
            ok = parsed.notna().to_numpy()
            idx = np.flatnonzero(todo)
            result_ns[idx[ok]] = values[ok]
            todo[idx[ok]] = False
        result = pd.Series(result_ns.view("datetime64[ns]"), index=s.index).dt.tz_localize("UTC")
        return result, todo

    def _type_datetime(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        result, bad = self._parse_datetimes(spec, s, present)
        if bad.any():
            drift.add("format_change", src, s[bad], pii=spec.pii)
        return result, bad, "date_format", f"{src!r} value {{value!r}} does not match {list(spec.formats)}"

    def _type_date(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        result, bad, check, msg = self._type_datetime(src, spec, s, present, drift)
        return result.dt.floor("D"), bad, check, msg

    def _type_enum(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        t = self._strip(_as_text(s))
        key = t.str.lower() if spec.case_insensitive else t
        mapped = _lookup(key, *self._enum_arrays[src])
        unknown = present.to_numpy() & mapped.isna().to_numpy()
        bad = None
        if unknown.any():
            drift.add("unknown_value", src, t[unknown], pii=spec.pii)
            if spec.on_unknown == "quarantine":
                bad = unknown
            elif spec.on_unknown == "keep":
                mapped = mapped.where(~unknown, t)
            elif spec.on_unknown == "default":
                mapped = mapped.where(~unknown, spec.default)
        return mapped, bad, "unknown_value", f"{src!r} has a value the contract does not know: {{value!r}}"

    def _type_many2one(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        if spec.part == "name":
            return self._many2one_name(src, spec, s, present)

        def first(v: Any) -> Any:
            if v is None or v is False:
                return None
            if isinstance(v, list | tuple):
                v = v[0] if v else None
            if isinstance(v, bool) or v is None:
                return None
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, int | str):
                return str(v).strip() or None
            return "\x01invalid"

        if spec.id_type is not None:
            return self._many2one_typed(src, spec.id_type, s, present)
        found = s.map(first).astype(pd.StringDtype("pyarrow")) if s.dtype == object else _as_text(s)
        valid = found.str.match(_ID_RE).fillna(False).to_numpy()
        bad = present.to_numpy() & ~valid
        found = found.where(~bad, None)
        return found, bad, "invalid_many2one", f"{src!r} is not an Odoo many2one [id, name]: {{value!r}}"

    def _many2one_typed(self, src: str, id_type: str, s: pd.Series, present: pd.Series) -> Any:
        """The id of an Odoo many2one ``[id, "name"]`` (or a bare id), normalised like the key it points at."""
        if s.dtype == object:
            # Only the first element of a pair is taken out here; whether it is an id, the normaliser decides
            # (a nested list or an object is not).
            def first(v: Any) -> Any:
                if isinstance(v, list | tuple):
                    v = v[0] if v else "\x01invalid"
                return "\x01invalid" if isinstance(v, list | tuple | dict) else v

            s = s.map(first, na_action="ignore")
        text = self._strip(_as_text(s)).where(present.to_numpy(), None)
        out, bad = ids.normalise(text, id_type)
        return (
            out,
            bad,
            "invalid_id",
            f"{src!r} is not a valid {id_type} id (many2one [id, name]): {{value!r}}",
        )

    def _many2one_name(self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series) -> Any:
        """The display name of an Odoo many2one ``[id, "name"]`` (e.g. currency_id ``[1, "USD"]`` -> USD)."""

        def name(v: Any) -> Any:
            if isinstance(v, list | tuple) and len(v) == 2 and isinstance(v[1], str) and v[1].strip():
                return v[1]
            return None

        names = s.astype(object).map(name, na_action="ignore").astype(pd.StringDtype("pyarrow"))
        names = _apply_transforms(names, spec.transform)
        bad = names.isna().to_numpy()
        limit = ""
        if spec.max_length:  # a name wider than the warehouse column would fail the whole load on Postgres
            bad |= (names.str.len() > spec.max_length).fillna(False).to_numpy()
            limit = f" with a name of at most {spec.max_length} characters"
        bad &= present.to_numpy()
        return (
            names.where(present.to_numpy(), None),
            bad,
            "invalid_many2one",
            f"{src!r} is not an Odoo many2one [id, name]{limit}: {{value!r}}",
        )

    def _type_association(
        self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats
    ) -> Any:
        def first(v: Any) -> Any:
            if isinstance(v, str):
                try:
                    v = json.loads(v)
                except ValueError:
                    # UI exports list associated ids separated by ';' — the first is the primary one.
                    return v.split(";")[0].strip() or None
                if isinstance(v, int | str) and not isinstance(v, bool):
                    return str(v).strip() or None  # a single id, e.g. a CSV cell "5790939450"
            if isinstance(v, dict):
                v = v.get("results", [])
            if isinstance(v, list) and v:
                item = v[0]
                return str(item.get("id")) if isinstance(item, dict) and item.get("id") is not None else None
            return None

        found = s.map(first).astype(pd.StringDtype("pyarrow"))
        if spec.id_type is not None:
            return self._typed_ids(src, spec.id_type, found)
        return found, None, "association", ""

    # -- frame-level ------------------------------------------------------------------------------
    def _to_model_dtypes(self, frame: pd.DataFrame) -> pd.DataFrame:
        for name, col in self.schema.columns.items():
            dt = str(col.dtype).lower()
            if "string" in dt:
                frame[name] = frame[name].astype(pd.StringDtype("pyarrow"))
            elif "datetime" in dt:
                frame[name] = _utc_ns(frame[name])
            elif "bool" in dt:
                frame[name] = frame[name].astype("boolean")
            elif "float" in dt:
                frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        return frame

    def _text_checks(self, frame: pd.DataFrame, errors: _Errors) -> None:
        """Values Postgres cannot store (NUL) or that carry undecodable bytes or are oversized, per row."""
        for col in self._text_targets:
            s = frame[col]
            if _plain_text(s, self.max_field_bytes):
                continue
            src = self.contract.source_for(col) or col
            # One regex pass finds both rare cases; they are told apart only on the rows it flags.
            odd = s.str.contains(_ODD_CHARS_RE, regex=True).fillna(False).to_numpy()
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
                badb = flagged.str.contains(_BAD_BYTES_RE, regex=True).fillna(False).to_numpy()
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
                        "value": _display(r.failure_case),
                        "reason": f"{col} fails {r.check} in model {self.contract.target}: {_display(r.failure_case)!r}",
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
        errors: _Errors,
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
                row = {k: _json_safe(v) for k, v in raw.iloc[int(i)].to_dict().items()}
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


def column_drift(contract: Contract, columns: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(missing required, missing optional, unexpected new) source columns of a file against a contract."""
    cols = set(columns)
    known = set(contract.fields) | set(contract.ignored)
    missing_required = [c for c in contract.required_columns if c not in cols]
    missing_optional = [
        c for c, f in contract.fields.items() if not f.required and not f.absent_ok and c not in cols
    ]
    # Dotted JSON columns are covered by a known parent (associations.* when the contract maps associations).
    new = [c for c in columns if c not in known and not any(c.startswith(k + ".") for k in known)]
    return missing_required, missing_optional, new
