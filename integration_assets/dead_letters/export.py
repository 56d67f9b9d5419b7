"""Dead letters shown to people: CSV for review outside the tool, JSON for the CLI. No raw payloads in the
CSV, no personal data, and no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from integration_assets.contracts.spec import all_contracts
from integration_assets.dead_letters import queries

# OWASP "CSV injection": cells starting with these are read as formulas by spreadsheet programs.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_EMAIL = re.compile(r"[^@\s'\"]+@[^@\s'\"]+\.[A-Za-z]{2,}")
_LONG_DIGITS = re.compile(r"\b(?:\d[ -]?){9,19}\b")

EXPORT_COLUMNS = (
    "id",
    "status",
    "source_system",
    "entity",
    "natural_key",
    "stage",
    "check_name",
    "reason",
    "column_name",
    "offending_value",
    "contract_version",
    "file_name",
    "position",
    "attempts",
    "first_seen",
    "last_seen",
    "resolution_note",
)


def neutralise_cell(value: Any) -> str:
    """Text that a spreadsheet will not execute: formula-like cells get a leading apostrophe."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _pii_columns() -> set[str]:
    cols: set[str] = set()
    for c in all_contracts():
        cols |= c.pii_columns
    return cols


def scrub(text: str | None, column: str | None, pii: set[str]) -> str | None:
    """No PII in exports: values of PII columns are withheld; emails and card-like numbers are masked anywhere."""
    if text is None:
        return None
    if column and column in pii:
        return "<withheld: PII column>"
    text = _EMAIL.sub("<email>", text)
    return _LONG_DIGITS.sub("<number>", text)


def export_csv(conn: sa.Connection, flt: queries.Filter) -> str:
    """Dead letters as CSV for review outside the tool: no raw payloads, no PII, formula cells neutralised."""
    pii = _pii_columns()
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in queries.select(conn, flt):
        col = r.get("column_name")
        r = dict(r)
        r["offending_value"] = scrub(r.get("offending_value"), col, pii)
        r["reason"] = scrub(r.get("reason"), col, pii)
        r["natural_key"] = scrub(r.get("natural_key"), None, pii)
        w.writerow([neutralise_cell(r.get(k)) for k in EXPORT_COLUMNS])
    return buf.getvalue()


def as_json_row(r: dict[str, Any], with_raw: bool = False) -> dict[str, Any]:
    out = {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in r.items()
        if k != "raw_record" or with_raw
    }
    for k in ("errors", "headers"):
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out
