"""Canonical source ids: one normalisation per id type, so one record has one key whatever its spelling.

A contract declares the type of every id column (``id_type:`` on the ``source_id`` field and on the fields
that refer to another record, such as an order line's ``order_id``), so a key and a reference to it are
normalised by the same function:

- ``odoo``: Odoo record ids, positive integers up to 2**31 - 1 (Odoo's ``id`` column is a PostgreSQL
  ``integer``). ``42``, ``"042"``, ``"42.0"`` and ``"4.2e1"`` are all the key ``42``.
- ``hubspot``: HubSpot object ids, positive integers up to 2**63 - 1 (HubSpot ids are 64-bit). ``7001``,
  ``07001``, ``7001.0`` and ``7001e0`` are all ``7001``.
- ``prefixed``: Stripe and EasyPost ids such as ``evt_…``, ``pi_…``, ``ch_…``, ``trk_…``, ``shp_…``: a
  lower-case prefix, ``_`` and letters/digits/underscores. They are case-sensitive and only stripped of
  surrounding whitespace.

Anything else (``abc``, ``true``, ``-3``, ``42.5``, ``0``, an empty value, an id longer than the key column)
is not an id: the mapping engine quarantines the record with check ``invalid_id``.

``normalise(series, id_type)`` is the vectorised form used by the mapping engine (Arrow kernels; the rare
values written with a decimal point or an exponent go through one ``to_numeric``). ``normalise_one(value,
id_type)`` and the per-type helpers (``odoo_id``, ``hubspot_id``, ``prefixed_id``) are the same rules for a
single value, for code that handles one event at a time; a test keeps both forms in agreement.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

IdType = Literal["odoo", "hubspot", "prefixed"]
ID_TYPES: tuple[str, ...] = get_args(IdType)

MAX_ID_LENGTH = 64  # the key columns are VARCHAR(64)
# The largest id of each numeric type.
_MAX = {"odoo": 2**31 - 1, "hubspot": 2**63 - 1}
# Larger values written with a point or an exponent cannot be told apart in a float64.
_FLOAT_EXACT = 2**53

_DIGITS = r"^[0-9]+$"
# An unsigned decimal number, optionally with a fraction and an exponent (42, 042, 42.0, 42., 4.2e1, 7001E0).
_NUMBER = r"^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_PREFIXED = r"^[a-z][a-z0-9]*_[A-Za-z0-9_]+$"
_DIGITS_RE, _NUMBER_RE, _PREFIXED_RE = re.compile(_DIGITS), re.compile(_NUMBER), re.compile(_PREFIXED)

# SQL predicates "this stored key is not in canonical numeric form" (used by the keys check on stored rows).
NON_CANONICAL_NUMERIC_SQL = {
    "postgresql": "source_id !~ '^[1-9][0-9]*$'",
    "sqlite": "(source_id = '' OR substr(source_id, 1, 1) = '0' OR source_id GLOB '*[^0-9]*')",
}
NUMERIC_TYPES: tuple[str, ...] = tuple(_MAX)


def _text(values: pd.Series) -> pa.Array:
    """The values as an Arrow string array (nulls stay null); the engine hands over stripped strings."""
    if pd.api.types.is_float_dtype(values.dtype):
        # Integral floats as digits, others as written; past 2**53 a float is not one id.
        v = values.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) <= _FLOAT_EXACT)
        text = np.char.mod("%d", np.where(whole, v, 0).astype(np.int64)).astype(object)
        text[~whole] = "x"  # not an id: refused by the rules below
        text[np.isnan(v)] = None
        return pa.array(text, pa.large_string())
    arr = pa.array(
        values.array if isinstance(values.dtype, pd.StringDtype) else values.astype("string").array,
        pa.large_string(),
    )
    return pc.utf8_trim_whitespace(arr)


def _numeric(text: pa.Array, maximum: int) -> tuple[pd.Series, np.ndarray]:
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    digits = pc.fill_null(pc.match_substring_regex(text, _DIGITS), False)
    # Leading zeros go; a run of zeros keeps its last digit ("000" -> "0", refused below as not positive).
    stripped = pc.utf8_ltrim(text, characters="0")
    stripped = pc.if_else(pc.equal(stripped, ""), pa.scalar("0", pa.large_string()), stripped)
    short = pc.and_(digits, pc.fill_null(pc.less_equal(pc.utf8_length(stripped), len(str(maximum))), False))
    # Every candidate at once (the others as "0", refused as not positive): one cast, no Python per value.
    number = pc.cast(pc.if_else(short, stripped, pa.scalar("0", pa.large_string())), pa.uint64())
    ok_arrow = pc.and_(
        short,
        pc.and_(
            pc.greater_equal(number, pa.scalar(1, pa.uint64())),
            pc.less_equal(number, pa.scalar(maximum, pa.uint64())),
        ),
    )
    ok = ok_arrow.to_numpy(zero_copy_only=False)
    out = pd.Series(
        pd.array(
            pc.if_else(ok_arrow, stripped, pa.scalar(None, pa.large_string())),
            dtype=pd.StringDtype("pyarrow"),
        )
    )
    # The rare spellings with a point or an exponent: exact only below 2**53.
    other = present & ~digits.to_numpy(zero_copy_only=False)
    if other.any():
        idx = np.flatnonzero(other)
        part = pc.take(text, pa.array(idx))
        is_number = pc.fill_null(pc.match_substring_regex(part, _NUMBER), False).to_numpy(
            zero_copy_only=False
        )
        if is_number.any():
            nidx = idx[is_number]
            vals = pd.to_numeric(
                pd.Series(pc.take(text, pa.array(nidx)).to_pylist(), dtype=object), errors="coerce"
            ).to_numpy(dtype="float64")
            with np.errstate(invalid="ignore"):
                good = (
                    np.isfinite(vals)
                    & (np.floor(vals) == vals)
                    & (vals >= 1)
                    & (vals <= min(maximum, _FLOAT_EXACT))
                )
            if good.any():
                ok[nidx[good]] = True
                out.iloc[nidx[good]] = vals[good].astype(np.int64).astype(str)
    return out, present & ~ok


def _prefixed(text: pa.Array) -> tuple[pd.Series, np.ndarray]:
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    ok = pc.fill_null(
        pc.and_(
            pc.match_substring_regex(text, _PREFIXED), pc.less_equal(pc.utf8_length(text), MAX_ID_LENGTH)
        ),
        False,
    )
    out = pc.if_else(ok, text, pa.scalar(None, pa.large_string()))
    return pd.Series(pd.array(out, dtype=pd.StringDtype("pyarrow"))), present & ~ok.to_numpy(
        zero_copy_only=False
    )


def normalise(values: pd.Series, id_type: str) -> tuple[pd.Series, np.ndarray]:
    """Canonical ids of ``values`` and the mask of values that are not ids of ``id_type``.

    Nulls stay null and are not invalid (whether an id is required is the contract's business). The result
    is an Arrow-backed string series on the index of ``values``; invalid values become null in it.
    """
    text = _text(values)
    if id_type in _MAX:
        out, bad = _numeric(text, _MAX[id_type])
    elif id_type == "prefixed":
        out, bad = _prefixed(text)
    else:
        raise ValueError(f"unknown id type {id_type!r}; known: {', '.join(ID_TYPES)}")
    return out.set_axis(values.index), bad


def normalise_one(value: Any, id_type: str) -> str | None:
    """The canonical id of one value, or None when it is not an id of ``id_type`` (or is missing).

    Accepts what a JSON document holds: an int, a float with an integral value, or a string. Same rules
    as ``normalise``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > _FLOAT_EXACT:  # past 2**53 a float is not one id
            return None
        text = str(int(value)) if value.is_integer() else repr(value)
    elif isinstance(value, int | str):
        text = str(value).strip()
    else:
        return None
    if id_type == "prefixed":
        return text if _PREFIXED_RE.match(text) and len(text) <= MAX_ID_LENGTH else None
    if id_type not in _MAX:
        raise ValueError(f"unknown id type {id_type!r}; known: {', '.join(ID_TYPES)}")
    maximum = _MAX[id_type]
    if _DIGITS_RE.match(text):
        stripped = text.lstrip("0") or "0"
        if len(stripped) > len(str(maximum)):
            return None
        number = int(stripped)
    elif _NUMBER_RE.match(text):
        f = float(text)
        if not math.isfinite(f) or not f.is_integer() or f > _FLOAT_EXACT:
            return None
        number = int(f)
    else:
        return None
    return str(number) if 1 <= number <= maximum else None


def odoo_id(value: Any) -> str | None:
    """An Odoo record id (``42``, ``"042"``, ``"42.0"`` -> ``"42"``), or None when ``value`` is not one."""
    return normalise_one(value, "odoo")


def hubspot_id(value: Any) -> str | None:
    """A HubSpot object id (``7001``, ``"07001"``, ``"7001e0"`` -> ``"7001"``), or None when ``value`` is not
    one. The HubSpot webhook path calls this for ``objectId``, so events and batch loads agree on keys."""
    return normalise_one(value, "hubspot")


def prefixed_id(value: Any) -> str | None:
    """A Stripe/EasyPost id (``evt_…``, ``pi_…``, ``shp_…``), stripped, or None when ``value`` is not one."""
    return normalise_one(value, "prefixed")
