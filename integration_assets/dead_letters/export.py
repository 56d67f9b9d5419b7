"""Dead letters shown to people: CSV for review outside the tool, JSON for the CLI. The CSV keeps what a
reviewer needs (ids, business keys, the reason, non-personal offending values) and has no raw payloads, no
personal data and no cell a spreadsheet would run as a formula."""

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
from integration_assets.observability.redact import redact_text

# OWASP "CSV injection": cells starting with these are read as formulas by spreadsheet programs.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_EMAIL = re.compile(r"[^@\s'\"]+@[^@\s'\"]+\.[A-Za-z]{2,}")
WITHHELD = "<withheld: PII column>"

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


def _columns() -> tuple[set[str], set[str]]:
    """(personal-data columns, id columns) of every contract, by source and canonical name."""
    pii: set[str] = set()
    ids: set[str] = set()
    for c in all_contracts():
        pii |= c.pii_columns
        for src, f in c.fields.items():
            if f.type in ("id", "association", "many2one") and not f.pii:
                ids.update((src, f.to))
    return pii, ids


def scrub(
    text: str | None, column: str | None, pii: set[str], ids: frozenset[str] | set[str] = frozenset()
) -> str | None:
    """A cell without personal data: values of personal-data columns (e-mail, names, phone, street) are
    withheld; ids and business keys are kept as they are (a deal id is not personal data); anything else keeps
    its text with e-mails, phone numbers, card numbers and secrets masked (observability/redact.py)."""
    if text is None:
        return None
    if column and column in pii:
        return WITHHELD
    if column and column in ids:
        return _EMAIL.sub("<email>", text)
    return redact_text(text)


def _reason(text: str | None, column: str | None, value: str | None, pii: set[str]) -> str | None:
    """The reason, which often quotes the offending value: a personal value is cut out, the rest kept."""
    if text is None:
        return None
    if column and column in pii and value:
        text = text.replace(value, WITHHELD)
    return redact_text(text)


def export_csv(conn: sa.Connection, flt: queries.Filter) -> str:
    """Dead letters as CSV for review outside the tool: ids and business keys kept, no raw payloads and no
    personal data (e-mails, phones, names, addresses), formula cells neutralised."""
    pii, ids = _columns()
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in queries.select(conn, flt):
        col = r.get("column_name")
        r = dict(r)
        r["reason"] = _reason(r.get("reason"), col, r.get("offending_value"), pii)
        r["offending_value"] = scrub(r.get("offending_value"), col, pii, ids)
        # The natural key is the record's id or business key: kept, unless a source keys records by e-mail.
        r["natural_key"] = (
            _EMAIL.sub("<email>", r["natural_key"]) if r.get("natural_key") else r.get("natural_key")
        )
        for k in ("file_name", "resolution_note"):
            r[k] = redact_text(r[k]) if r.get(k) else r.get(k)
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
