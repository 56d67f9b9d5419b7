"""How each file format is re-written without the subject's records: CSV (Arrow, or row by row), JSON,
JSONL and Parquet records, gzip and zip around any of them, and a byte scan for what does not parse.
Every format keeps its own encoding, BOM, quoting and compression.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration_assets.privacy.subjects import (
    SourceFields,
    Subject,
    canonical_id,
    distinctive,
    record_emails,
    record_id,
    record_values,
    redact_text,
    value_forms,
    value_patterns,
)

JSON_SUFFIXES = {".json"}


def _re2_escape(text: str) -> str:
    """``text`` as a literal in an RE2 pattern (Arrow's regex engine), metacharacters escaped."""
    return "".join("\\" + ch if ch in r"\.^$|?*+()[]{}" else ch for ch in text)


JSONL_SUFFIXES = {".jsonl", ".ndjson"}


@dataclass
class _Outcome:
    data: bytes
    records: int
    values: int
    found: set[str]
    unparsed: bool = False


def _decode(data: bytes, fallback: str) -> tuple[str, str, str]:
    """(text, encoding, BOM) such that ``bom + text.encode(encoding, 'surrogateescape')`` is ``data``."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "surrogateescape"), "utf-8", "\ufeff"
    for bom, enc in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            return data[2:].decode(enc, "surrogatepass"), enc, "\ufeff"
    try:
        return data.decode("utf-8"), "utf-8", ""
    except UnicodeDecodeError:
        return data.decode(fallback, "surrogateescape"), fallback, ""


def _encode(text: str, encoding: str, bom: str) -> bytes:
    if encoding.startswith("utf-16"):
        prefix = (b"\xff\xfe" if encoding == "utf-16-le" else b"\xfe\xff") if bom else b""
        return prefix + text.encode(encoding, "surrogatepass")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding, "surrogateescape")


class FormatRedactor:
    """Removes the subjects' records from one file's content, format by format, and copies of personal values
    anywhere in it (``files.FileRedactor`` adds the file handling)."""

    def __init__(
        self, subjects: Sequence[Subject], fields: SourceFields, fallback_encoding: str = "cp1252"
    ) -> None:
        self.ids = {s.source_id for s in subjects}
        self.fields = fields
        self.fallback = fallback_encoding
        self.patterns: list[re.Pattern[str]] = []
        self.values: set[str] = set()  # the forms ``patterns`` are made of (for the byte prefilter)
        self.emails: set[str] = set()  # a record without an id that carries one of these is the subject's
        self._any: re.Pattern[str] | None = None
        self._collecting = False  # collect(): only the subject's records are looked for
        self.found: set[str] = set()  # values of the records the last redact() removed

    def set_values(self, values: Iterable[str]) -> None:
        """The subject's personal values: the distinctive ones (``subjects.distinctive``) are replaced wherever
        they appear; its e-mail addresses also identify its records in files without an id column."""
        keep = distinctive(values)
        self.patterns = value_patterns(keep)
        self.values = value_forms(keep)
        self.emails = {v.lower() for v in keep if "@" in v}
        forms = sorted(self.values, key=len, reverse=True)
        self._any = re.compile("|".join(re.escape(f) for f in forms), re.IGNORECASE) if forms else None

    def _is_subject(self, record: Any, by_id: bool) -> bool:
        """By its id (``by_id``: a folder of the subject's entity), else, for a record with no id, by e-mail."""
        rid = record_id(record, self.fields)
        if rid is not None:
            return by_id and rid in self.ids
        return bool(self.emails) and not self.emails.isdisjoint(record_emails(record, self.fields))

    def _redact(self, text: str) -> tuple[str, int]:
        if self._any is None or not self._any.search(text):  # one search: most text holds no value
            return text, 0
        return redact_text(text, self.patterns)

    # -- formats -------------------------------------------------------------------------------------------
    def _csv(self, data: bytes, by_id: bool) -> _Outcome:
        text, enc, bom = _decode(data, self.fallback)
        fast = self._csv_arrow(text, enc, bom, by_id)
        if fast is not None:
            return fast if fast.records or fast.values else _Outcome(data, 0, 0, fast.found)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows:
            return self._scan(data)
        header = [h.strip() for h in rows[0]]
        idx = [i for i, h in enumerate(header) if h in self.fields.id_fields]
        kept: list[list[str]] = [rows[0]]
        removed, found, values, in_removed = 0, set(), 0, 0
        ids = self.ids
        for row in rows[1:]:
            cells = [row[i] for i in idx if i < len(row)]
            # The usual cell is the id in canonical form: a set lookup; other forms go through canonical_id.
            if any(c in ids or ((c[:1] == "0" or not c.isdigit()) and canonical_id(c) in ids) for c in cells):
                mine = by_id
            elif any(c.strip() for c in cells):
                mine = False  # another record's id
            else:
                mine = bool(self.emails) and self._is_subject(dict(zip(header, row, strict=False)), by_id)
            if mine:
                removed += 1
                found |= record_values(dict(zip(header, row, strict=False)), self.fields)
                if self._any is not None:
                    in_removed += len(self._any.findall("\x1f".join(row)))
                continue
            kept.append(row)
        # Copies of the values in the other rows: none when the whole text holds no more matches than the
        # removed rows (one search of the text instead of one per row).
        if self._any is not None and not self._collecting and len(self._any.findall(text)) > in_removed:
            for row in kept[1:]:
                if self._any.search("\x1f".join(row)):
                    for i, cell in enumerate(row):
                        row[i], n = redact_text(cell, self.patterns)
                        values += n
        if not removed and not values or self._collecting:
            return _Outcome(data, removed, values, found)
        first_line = text.split("\n", 1)[0]
        out = io.StringIO(newline="")
        writer = csv.writer(
            out,
            lineterminator="\r\n" if first_line.endswith("\r") else "\n",
            quoting=csv.QUOTE_ALL if first_line.startswith('"') else csv.QUOTE_MINIMAL,
        )
        writer.writerows(kept)
        return _Outcome(_encode(out.getvalue(), enc, bom), removed, values, found)

    def _csv_arrow(self, text: str, enc: str, bom: str, by_id: bool) -> _Outcome | None:
        """The CSV path of a large export: Arrow parses and writes (C++, ~10x the csv module), the id column is
        matched as a set, and only the rows holding a value go through Python. None when Arrow cannot read the
        file as it is (a bad line, a duplicate header, ...): the csv module path then does it row by row."""
        # lazy: Arrow only for a large export being redacted, not for every erasure, saves 230 ms
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        first_line, sep, _ = text.partition("\n")
        if not sep:
            return None
        try:
            header = [h.strip() for h in next(csv.reader([first_line.rstrip("\r")]))]
        except (csv.Error, StopIteration):
            return None
        idx = [h for h in header if h in self.fields.id_fields]
        if not idx and not self.emails:
            return None  # nothing identifies a record: the row-by-row path replaces values only
        try:
            table = pacsv.read_csv(
                io.BytesIO(text.encode("utf-8", "surrogatepass")),
                read_options=pacsv.ReadOptions(
                    column_names=[f"c{i}" for i in range(len(header))], skip_rows=1, block_size=1 << 24
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={f"c{i}": pa.string() for i in range(len(header))},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeEncodeError):
            return None
        names = dict(zip(header, table.column_names, strict=True))
        mine = pa.array([False] * table.num_rows, type=pa.bool_())
        has_id = mine
        for h in idx:
            col = table.column(names[h])
            plain = pc.match_substring_regex(col, r"^(0|[1-9][0-9]*)$")
            hit = pc.is_in(col, value_set=pa.array(sorted(self.ids), type=pa.string()))
            odd = pc.and_(pc.invert(plain), pc.not_equal(pc.utf8_trim_whitespace(col), ""))
            if pc.any(
                odd
            ).as_py():  # other forms of a number (07001, 7001.0): the few go through canonical_id
                flags = [
                    canonical_id(v) in self.ids if o else False
                    for v, o in zip(col.to_pylist(), odd.to_pylist(), strict=True)
                ]
                hit = pc.or_(hit, pa.array(flags, type=pa.bool_()))
            mine = pc.or_(mine, hit)
            has_id = pc.or_(has_id, pc.not_equal(pc.utf8_trim_whitespace(col), ""))
        mine = pc.and_(mine, pa.scalar(by_id))
        if self.emails:  # a row without an id is the subject's when it carries the subject's e-mail
            for h in header:
                if h in self.fields.by_column.get("email", ()):
                    same = pc.is_in(
                        pc.utf8_lower(pc.utf8_trim_whitespace(table.column(names[h]))),
                        value_set=pa.array(sorted(self.emails), type=pa.string()),
                    )
                    mine = pc.or_(mine, pc.and_(pc.invert(has_id), same))
        removed = pc.sum(pc.cast(mine, pa.int64())).as_py() or 0
        found: set[str] = set()
        gone = table.filter(mine)
        for r in gone.to_pylist():
            found |= record_values({h: r[names[h]] for h in header}, self.fields)
        kept = table.filter(pc.invert(mine))
        values = 0
        if self.values and not self._collecting:
            # Copies of the values in other rows: found by Arrow (RE2), replaced in Python in those cells only.
            pattern = "|".join(_re2_escape(f) for f in sorted(self.values, key=len, reverse=True))
            columns = []
            for name in kept.column_names:
                col = kept.column(name)
                hits = pc.match_substring_regex(col, pattern, ignore_case=True)
                if pc.any(hits).as_py():
                    cells = col.to_pylist()
                    for i, hit in enumerate(hits.to_pylist()):
                        if hit:
                            cells[i], n = redact_text(cells[i], self.patterns)
                            values += n
                    col = pa.chunked_array([pa.array(cells, type=pa.string())])
                columns.append(col)
            kept = pa.table(columns, names=kept.column_names)
        if not removed and not values or self._collecting:
            return _Outcome(b"", removed, values, found)
        eol = "\r\n" if first_line.endswith("\r") else "\n"
        out = io.BytesIO()
        out.write((first_line.rstrip("\r") + eol).encode("utf-8", "surrogatepass"))
        if kept.num_rows:
            pacsv.write_csv(
                kept,
                out,
                pacsv.WriteOptions(
                    include_header=False,
                    eol=eol,
                    quoting_style="all_valid" if first_line.startswith('"') else "needed",
                ),
            )
        body = out.getvalue().decode("utf-8", "surrogatepass")
        return _Outcome(_encode(body, enc, bom), removed, values, found)

    def _jsonl(self, data: bytes, by_id: bool) -> _Outcome:
        text, enc, bom = _decode(data, self.fallback)
        lines = text.splitlines(keepends=True)
        kept: list[str] = []
        removed, values, found = 0, 0, set()
        for line in lines:
            record: Any = None
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
            if self._is_subject(record, by_id):
                removed += 1
                found |= record_values(record, self.fields)
                continue
            line, n = self._redact(line)
            values += n
            kept.append(line)
        if not removed and not values:
            return _Outcome(data, 0, 0, found)
        return _Outcome(_encode("".join(kept), enc, bom), removed, values, found)

    def _json(self, data: bytes, by_id: bool) -> _Outcome:
        text, enc, bom = _decode(data, self.fallback)
        try:
            doc = json.loads(text)
        except ValueError:
            return self._scan(data)
        holder: Any = doc
        key: Any = None
        if isinstance(doc, dict) and isinstance(doc.get("results"), list):
            key = "results"
        elif isinstance(doc, dict) and isinstance(doc.get("result"), list):
            key = "result"
        elif not isinstance(doc, list):
            return self._scan(data)
        records = holder[key] if key is not None else holder
        kept, removed, found = [], 0, set()
        for r in records:
            if self._is_subject(r, by_id):
                removed += 1
                found |= record_values(r, self.fields)
            else:
                kept.append(r)
        if key is not None:
            holder[key] = kept
        else:
            doc = kept
        out = json.dumps(doc, ensure_ascii=False, indent=2 if "\n" in text.strip() else None)
        out, values = self._redact(out)
        if not removed and not values:
            return _Outcome(data, 0, 0, found)
        return _Outcome(
            _encode(out + ("\n" if text.endswith("\n") else ""), enc, bom), removed, values, found
        )

    def _parquet(self, data: bytes, by_id: bool) -> _Outcome:
        # lazy: Arrow only when a Parquet export is redacted, saves 230 ms
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError):
            return self._scan(data)
        idx = [n for n in table.column_names if n in self.fields.id_fields] if by_id else []
        keep = [True] * table.num_rows
        for name in idx:
            for i, v in enumerate(table.column(name).to_pylist()):
                if canonical_id(v) in self.ids:
                    keep[i] = False
        removed = keep.count(False)
        found: set[str] = set()
        if removed:
            gone = table.filter(pa.array([not k for k in keep])).to_pylist()
            for r in gone:
                found |= record_values(r, self.fields)
        table = table.filter(pa.array(keep))
        values = 0
        columns = []
        for name in table.column_names:
            col = table.column(name)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                cells = []
                for v in col.to_pylist():
                    if isinstance(v, str):
                        v, n = self._redact(v)
                        values += n
                    cells.append(v)
                col = pa.chunked_array([pa.array(cells, type=col.type)])
            columns.append(col)
        if not removed and not values:
            return _Outcome(data, 0, 0, found)
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_arrays(columns, names=table.column_names), buf)
        return _Outcome(buf.getvalue(), removed, values, found)

    def _scan(self, data: bytes) -> _Outcome:
        """A file that does not parse as its format: only copies of known values are replaced."""
        text, enc, bom = _decode(data, self.fallback)
        out, values = self._redact(text)
        return _Outcome(_encode(out, enc, bom) if values else data, 0, values, set(), unparsed=True)

    def _content(self, name: str, data: bytes, by_id: bool) -> _Outcome:
        lower = name.lower()
        if data[:2] == b"\x1f\x8b":  # gzip, whatever the name says
            try:
                inner = gzip.decompress(data)
            except (OSError, EOFError):
                return _Outcome(data, 0, 0, set(), unparsed=True)
            res = self._content(name[:-3] if lower.endswith(".gz") else name, inner, by_id)
            if res.data is not inner:
                res.data = gzip.compress(res.data, mtime=0)
            else:
                res.data = data
            return res
        if data[:4] == b"PK\x03\x04":
            return self._zip(data, by_id)
        suffix = Path(lower).suffix
        if suffix == ".csv":
            return self._csv(data, by_id)
        if suffix in JSONL_SUFFIXES:
            return self._jsonl(data, by_id)
        if suffix in JSON_SUFFIXES:
            return self._json(data, by_id)
        if suffix == ".parquet":
            return self._parquet(data, by_id)
        return self._scan(data)

    def _zip(self, data: bytes, by_id: bool) -> _Outcome:
        try:
            src = zipfile.ZipFile(io.BytesIO(data))
            members = [(info, src.read(info)) for info in src.infolist()]
        except (zipfile.BadZipFile, OSError, RuntimeError):
            return _Outcome(data, 0, 0, set(), unparsed=True)
        total = _Outcome(data, 0, 0, set())
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
            for info, content in members:
                res = self._content(info.filename, content, by_id)
                total.records += res.records
                total.values += res.values
                total.found |= res.found
                dst.writestr(info, res.data)
        if total.records or total.values:
            total.data = out.getvalue()
        return total
