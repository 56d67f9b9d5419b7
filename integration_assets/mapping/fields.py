"""How each field type of a contract maps a source column (``_type_<type>`` methods of ``FieldMappers``).

Each returns ``(canonical values, bad-row mask or None, check name, message)``; a bad row is quarantined
with that check. Drift met on the way is added to the chunk's ``DriftStats``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from integration_assets.contracts import ids
from integration_assets.contracts.spec import Contract, FieldSpec
from integration_assets.mapping.drift import DriftStats
from integration_assets.mapping.results import RowErrors
from integration_assets.mapping.values import ID_RE, apply_transforms, as_text, lookup, utc_ns


class FieldMappers:
    """The per-field half of ``ContractMapper``: needs the contract, the compiled enum value maps and a
    per-thread memo of the stripped source column."""

    contract: Contract
    _enum_arrays: dict[str, tuple[pa.Array, pa.Array]]
    _memo: threading.local

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
        self, src: str, spec: FieldSpec, s: pd.Series, errors: RowErrors, drift: DriftStats
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
        t, transforms = as_text(s), spec.transform
        if transforms[:1] == ("strip",):
            t, transforms = self._strip(t), transforms[1:]
        t = apply_transforms(t, transforms)
        t = t.where(present, None)
        bad = None
        if spec.max_length:
            bad = (t.str.len() > spec.max_length).fillna(False).to_numpy()
        return t, bad, "max_length", f"{src!r} longer than {spec.max_length} characters"

    def _type_id(self, src: str, spec: FieldSpec, s: pd.Series, present: pd.Series, drift: DriftStats) -> Any:
        t = self._strip(as_text(s)).where(present, None)
        if spec.id_type is not None:
            return self._typed_ids(src, spec.id_type, t)
        ok = t.str.match(ID_RE).fillna(True)
        return t.where(ok, None), (~ok).to_numpy(), "invalid_id", f"{src!r} is not a valid id: {{value!r}}"

    @staticmethod
    def _typed_ids(src: str, id_type: str, t: pd.Series) -> Any:
        """Canonical ids (integration_assets.contracts.ids); a value that is not one is quarantined."""
        out, bad = ids.normalise(t, id_type)
        return out, bad, "invalid_id", f"{src!r} is not a valid {id_type} id: {{value!r}}"

    def _numeric(self, s: pd.Series, present: pd.Series) -> tuple[pd.Series, np.ndarray]:
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            num = s.astype("float64")
        else:
            if s.dtype == object:
                # Booleans are not numbers (JSON true would otherwise become 1.0).
                s = s.map(lambda v: "not-a-number" if isinstance(v, bool) else v)
            num = pd.to_numeric(self._strip(as_text(s)), errors="coerce").astype("float64")
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
        t = self._strip(as_text(s)).str.lower()
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
            return utc_ns(ts), np.zeros(n, dtype=bool)
        text = self._strip(as_text(s))
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
        t = self._strip(as_text(s))
        key = t.str.lower() if spec.case_insensitive else t
        mapped = lookup(key, *self._enum_arrays[src])
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
        found = s.map(first).astype(pd.StringDtype("pyarrow")) if s.dtype == object else as_text(s)
        valid = found.str.match(ID_RE).fillna(False).to_numpy()
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
        text = self._strip(as_text(s)).where(present.to_numpy(), None)
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
        names = apply_transforms(names, spec.transform)
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
