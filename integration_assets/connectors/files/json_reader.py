"""JSON and JSONL exports: records as dotted columns, in bounded chunks.

A JSONL line that is not JSON, nested too deep, not an object or holding a lone UTF-16 surrogate is a
``ParseFailure``; a JSON document that cannot be read is ``FileRejected``. HubSpot list responses
(``results``), Odoo ``search_read`` lists and JSON-RPC envelopes (``result``) are read alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from integration_assets.connectors.files.encoding import decoded_text
from integration_assets.contracts.records import FileRejected, ParseFailure, RawChunk, flatten_record

if TYPE_CHECKING:
    from integration_assets.connectors.files.source import SourceFile

MAX_JSON_DEPTH = 64


def _depth_ok(text: str) -> bool:
    """Reject pathologically nested JSON before json.loads recurses into it."""
    depth = max_depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                max_depth = depth
                if max_depth > MAX_JSON_DEPTH:
                    return False
        elif ch in "]}":
            depth -= 1
    return True


# A JSON escape of a UTF-16 surrogate (\ud800): cheap test of a record's text before its values are walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value: Any) -> str | None:
    """The first code point of a lone UTF-16 surrogate in a JSON value (keys included), as its escape.

    JSON can escape one (``"\\ud800"``) and json.loads keeps it, but it is not Unicode: no UTF-8 text, the
    warehouse's included, can store it, so the whole load would fail on it instead of the record."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        return None if m is None else f"\\u{ord(m.group()):04x}"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _lone_surrogate(k) or _lone_surrogate(v)
            if found:
                return found
    elif isinstance(value, list):
        for v in value:
            found = _lone_surrogate(v)
            if found:
                return found
    return None


def _surrogate_failure(pos: int, raw: str, escape: str) -> ParseFailure:
    return ParseFailure(
        pos,
        raw,
        f"a JSON string holds the lone UTF-16 surrogate {escape}, which is not valid Unicode "
        "and cannot be stored",
        "json_invalid_unicode",
    )


def _records_to_chunk(
    records: list[tuple[int, Any]],
    failures: list[ParseFailure],
    max_columns: int = 0,
    check_surrogates: bool = False,
) -> RawChunk:
    rows, positions = [], []
    names: set[str] = set()
    for pos, rec in records:
        if not isinstance(rec, dict):
            failures.append(
                ParseFailure(
                    pos,
                    json.dumps(rec)[:10000],
                    f"expected a JSON object, got {type(rec).__name__}",
                    "json_not_object",
                )
            )
            continue
        if check_surrogates and (escape := _lone_surrogate(rec)):
            failures.append(
                _surrogate_failure(pos, json.dumps(rec)[:10000], escape)
            )  # ASCII: the escape, not the code point
            continue
        flat = flatten_record(rec)
        if max_columns:
            # Before the frame is built: its cost grows with the number of distinct keys, not the records.
            names.update(flat)
            if len(names) > max_columns:
                raise FileRejected(
                    "too_many_columns",
                    f"the records have more than {max_columns} distinct fields "
                    f"(record {pos}), over the configured limit (INTEGRATION_MAX_COLUMNS)",
                )
        rows.append(flat)
        positions.append(pos)
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    frame.columns = [str(c) for c in frame.columns]
    frame = frame.astype(object).where(frame.notna(), None) if rows else frame
    return RawChunk(frame, np.asarray(positions, dtype=np.int64), failures)


def jsonl_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    text = decoded_text(src)
    batch: list[tuple[int, Any]] = []
    failures: list[ParseFailure] = []
    # Records end at \n only: str.splitlines() also breaks at U+2028, U+2029 and U+0085, which JSON strings
    # may hold unescaped (text pasted from a browser or a word processor).
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if not _depth_ok(line):
            failures.append(
                ParseFailure(
                    lineno, line[:10000], f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "json_too_deep"
                )
            )
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            failures.append(
                ParseFailure(lineno, line, f"invalid JSON: {exc.msg} at column {exc.colno}", "json_invalid")
            )
            continue
        if _SURROGATE_ESCAPE.search(line) and (escape := _lone_surrogate(record)):
            failures.append(_surrogate_failure(lineno, line, escape))
            continue
        batch.append((lineno, record))
        if len(batch) >= chunk_rows:
            yield _records_to_chunk(batch, failures, src.max_columns)
            batch, failures = [], []
    if batch or failures:
        yield _records_to_chunk(batch, failures, src.max_columns)


def json_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    text = decoded_text(src)
    if not _depth_ok(text):
        raise FileRejected("json_too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileRejected(
            "invalid_json", f"invalid or truncated JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        records = doc["results"]  # HubSpot v3 list/search response
    elif isinstance(doc, list):
        records = doc  # Odoo search_read result, or a bare list of HubSpot records
    elif isinstance(doc, dict) and isinstance(doc.get("result"), list):
        records = doc["result"]  # a JSON-RPC envelope saved as is
    else:
        raise FileRejected(
            "unexpected_json_shape", "expected a JSON list of records or an object with 'results'"
        )
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    for start in range(0, max(len(records), 1), chunk_rows):
        part = records[start : start + chunk_rows]
        if not part:
            break
        yield _records_to_chunk(
            [(start + i + 1, r) for i, r in enumerate(part)], [], src.max_columns, surrogates
        )
