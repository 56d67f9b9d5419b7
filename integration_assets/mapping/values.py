"""Column-wise helpers of the mapper: source values as text, fast checks on Arrow buffers, lookups,
transforms, timestamps and the contract's derived columns."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from integration_assets.contracts.records import BAD_BYTE_MAX, BAD_BYTE_MIN
from integration_assets.contracts.spec import Contract

ID_RE = r"^[A-Za-z0-9_\-.:/]{1,64}$"
BAD_BYTES_RE = f"[{BAD_BYTE_MIN}-{BAD_BYTE_MAX}]"
ODD_CHARS_RE = f"[\x00{BAD_BYTE_MIN}-{BAD_BYTE_MAX}]"


def as_text(s: pd.Series) -> pd.Series:
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
# undecodable bytes (see contracts.records).
ODD_LEADS = sorted({b"\x00", BAD_BYTE_MIN.encode()[:1], BAD_BYTE_MAX.encode()[:1]})


def plain_text(s: pd.Series, max_bytes: int) -> bool:
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
        if any(lead in raw for lead in ODD_LEADS):
            return False
    return True


def lookup(key: pd.Series, keys: pa.Array, values: pa.Array) -> pd.Series:
    """``key.map(dict(zip(keys, values)))`` in Arrow (pandas maps element by element in Python: ~6x slower)."""
    arr = pa.array(key.array, pa.large_string())
    out = pc.take(values, pc.index_in(arr, value_set=keys))
    return pd.Series(pd.array(out, dtype=pd.StringDtype("pyarrow")), index=key.index)


def apply_transforms(t: pd.Series, transforms: tuple[str, ...]) -> pd.Series:
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


def utc_ns(s: pd.Series) -> pd.Series:
    """``s`` as datetime64[ns, UTC]. Values that are already zone-aware are converted directly:
    ``pd.to_datetime`` turns them into Python Timestamps one by one (its cache check) first."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")
