"""CSV exports: the header, then records in bounded chunks through pyarrow's streaming reader.

A record with the wrong number of fields is a ``ParseFailure``; a quote that is never closed spoils only the
record it opens (the lines it swallowed are read again one by one). Memory follows the chunk size, not the
file's (``_ReadAhead``).
"""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from integration_assets.connectors.files.encoding import decoded_text
from integration_assets.connectors.files.hashing import BLOCK
from integration_assets.contracts.records import PUA_ERRORS, FileRejected, ParseFailure, RawChunk

if TYPE_CHECKING:
    from integration_assets.connectors.files.source import SourceFile


def csv_header(path: Path, encoding: str, fallback: str, max_columns: int = 0) -> list[str]:
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
        cut = bool(fh.read(1))  # the file goes on past the first MiB
    enc = "utf-8" if encoding in ("utf-8", "mixed") else encoding
    text = head.decode(enc, errors=PUA_ERRORS).lstrip("\ufeff")
    first_line = text.splitlines()[0] if text.splitlines() else ""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise FileRejected("unreadable_header", f"the header row cannot be parsed: {exc}") from exc
    header_cut = cut and reader.line_num > text.count("\n")  # the header record runs past the first MiB
    # Checked on the header alone: the CSV reader's memory and time grow with the width of every record.
    if max_columns and len(header) > max_columns:
        raise FileRejected(
            "too_many_columns",
            f"the header has {'at least ' if header_cut else ''}{len(header)} "
            f"columns, over the configured limit of {max_columns} (INTEGRATION_MAX_COLUMNS)",
        )
    if header_cut:
        raise FileRejected("unreadable_header", "the header row is longer than 1 MiB")
    header = [h.strip() for h in header]
    if not any(header):
        raise FileRejected("empty_header", "the first row is empty; expected a header row")
    seen: dict[str, int] = {}
    for i, name in enumerate(header, 1):
        if name in seen:
            raise FileRejected(
                "duplicate_header",
                f"duplicate column name {name!r} (columns {seen[name]} and {i}); the mapping would be ambiguous",
            )
        seen[name] = i
    if len(header) == 1:
        for delim in (";", "\t", "|"):
            if first_line.count(delim) >= 2:
                raise FileRejected(
                    "wrong_delimiter",
                    f"the header has a single column but contains {first_line.count(delim)} {delim!r}: "
                    f"the file looks {delim!r}-delimited; exports must be comma-separated",
                )
    return header


class _ReadAhead(io.RawIOBase):
    """A file whose reads run at most ``blocks`` reads ahead of the batches consumed.

    pyarrow's streaming CSV reader reads blocks in a background thread with a queue of up to 32 blocks: with a
    consumer slower than the disk (mapping is), that is 32 x block_size of memory whatever the chunk size.
    Each ``read`` of the reader's thread waits here until the consumer has taken enough batches (one batch
    per block), so memory stays bounded by the chunk size. A record can straddle at most two blocks, so a
    window of a few blocks never starves the reader; a timeout keeps a surprise from hanging a load.
    """

    def __init__(self, path: Path, blocks: int = 4, timeout_s: float = 60.0) -> None:
        self._fh = path.open("rb", buffering=0)
        self._cond = threading.Condition()
        self._reads = 0
        self._consumed = 0
        self._blocks = blocks
        self._timeout = timeout_s
        self._stopped = False

    def readable(self) -> bool:
        return True

    def consumed(self) -> None:
        with self._cond:
            self._consumed += 1
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            self._cond.wait_for(
                lambda: self._stopped or self._reads - self._consumed < self._blocks, timeout=self._timeout
            )
            if self._stopped:  # the consumer is gone (finished early or failed): end the reader's thread now
                return b""
            self._reads += 1
        return self._fh.read(size)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._fh.close()
        super().close()


def csv_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    failures: list[ParseFailure] = []
    bad_positions: list[int] = []  # ascending: rows are parsed in file order (use_threads=False)
    recovered: list[tuple[int, list[str]]] = []  # (position, fields) of lines re-read after an unclosed quote
    counter = {"good": 0, "bad": 0, "last": 0, "shift": 0}

    def on_invalid(row: Any) -> str:
        counter["bad"] += 1
        reason = (
            f"expected {row.expected_columns} fields, found {row.actual_columns}"
            " (unbalanced quotes or a stray delimiter)"
        )
        # row.number is pyarrow's record number (header = 1); lines re-read below are records of their own.
        pos = (
            row.number - 1 + counter["shift"] if row.number is not None else counter["good"] + counter["bad"]
        )
        bad_positions.append(pos)
        lines = row.text.splitlines()
        if len(lines) > 1:
            # A quote that is never closed swallows the following lines into one broken record. Only its first
            # line is the bad record: the others are read again one by one, so the rest of the file still loads.
            failures.append(
                ParseFailure(
                    pos,
                    lines[0],
                    f"unbalanced quotes: {reason}; the {len(lines) - 1} "
                    "following line(s) it swallowed were read again one by one",
                    "csv_unbalanced_quote",
                )
            )
            counter["shift"] += len(lines) - 1
            for k, line in enumerate(lines[1:], 1):
                bad_positions.append(pos + k)  # taken, so later good records keep their own numbers
                if line.strip():
                    _reread_line(line, pos + k, len(src.columns), recovered, failures)
        else:
            failures.append(ParseFailure(pos, row.text, reason, "csv_field_count"))
        return "skip"

    # A quote left open runs to the end of the file; pyarrow then reads everything after it as one value.
    tail = _unclosed_quote_tail(src)
    # Single-threaded parsing is what makes pyarrow report row numbers of invalid rows; the streaming reader
    # parses serially anyway (measured: no difference on a 1M-row, 15-column export).
    if tail is not None:
        stream: Any = io.BytesIO(tail[0].encode("utf-8"))
        read_opts = pacsv.ReadOptions(
            block_size=16 << 20, column_names=src.columns, skip_rows=1, use_threads=False
        )
    elif src.encoding in ("utf-8",):
        stream = _ReadAhead(src.body)
        read_opts = pacsv.ReadOptions(
            block_size=16 << 20, column_names=src.columns, skip_rows=1, use_threads=False
        )
    elif src.encoding == "mixed":
        stream = io.BytesIO(decoded_text(src).encode("utf-8"))
        read_opts = pacsv.ReadOptions(
            block_size=16 << 20, column_names=src.columns, skip_rows=1, use_threads=False
        )
    else:
        # Transcoding makes a varying number of reads per block, so the read-ahead window cannot count blocks:
        # files in a fallback encoding are read unthrottled.
        stream = str(src.body)
        read_opts = pacsv.ReadOptions(
            block_size=16 << 20,
            column_names=src.columns,
            skip_rows=1,
            encoding=src.encoding,
            use_threads=False,
        )
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=read_opts,
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in src.columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if isinstance(stream, _ReadAhead):
            stream.close()
        # A header without a line end and nothing after it: pyarrow cannot skip it, but the file is simply
        # header-only (no records; the caller rejects it as no_data_rows). A header over 1 MiB is refused earlier.
        if "Could not skip initial" in str(exc) and tail is None:
            return
        raise FileRejected("unreadable_csv", f"the CSV cannot be parsed: {exc}") from exc
    pending: list[pa.RecordBatch] = []
    pending_rows = 0

    def flush(limit: int = 0) -> RawChunk:
        """The pending batches as one chunk; with ``limit``, only its first ``limit`` rows (the rest stay
        pending), so a chunk has the configured size and not that of the 16 MiB blocks it was read in."""
        nonlocal pending, pending_rows
        table = pa.Table.from_batches(pending, schema=reader.schema)
        rest: list[pa.RecordBatch] = []
        if 0 < limit < table.num_rows:
            table, rest = table.slice(0, limit), table.slice(limit).to_batches()  # zero-copy slices
        frame = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
        counter["good"] += len(frame)
        # Good records take the numbers the failed records (reported as they were met) did not take.
        last, n = counter["last"], len(frame)
        taken = [p for p in bad_positions if p > last]
        positions = np.arange(last + 1, last + n + len(taken) + 1, dtype=np.int64)
        if taken:
            positions = positions[~np.isin(positions, taken)][:n]
        counter["last"] = int(positions[-1]) if n else last
        chunk = RawChunk(frame, positions, list(failures))
        failures.clear()
        pending, pending_rows = rest, sum(b.num_rows for b in rest)
        return chunk

    try:
        for batch in reader:
            if isinstance(stream, _ReadAhead):
                stream.consumed()
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= max(chunk_rows, 1):
                yield flush(chunk_rows)
    except pa.ArrowInvalid as exc:
        raise FileRejected("unreadable_csv", f"the CSV cannot be parsed: {exc}") from exc
    finally:
        if isinstance(stream, _ReadAhead):
            stream.close()
    if pending or failures:
        if not pending:
            yield RawChunk(pd.DataFrame(columns=src.columns), np.empty(0, dtype=np.int64), list(failures))
            failures.clear()
        else:
            yield flush()
    tail_failures: list[ParseFailure] = []
    if tail is not None:
        # The record holding the open quote follows the last record pyarrow saw; only its first line is bad.
        pos = max([counter["last"], *bad_positions]) + 1
        lines = tail[1]
        tail_failures.append(
            ParseFailure(
                pos,
                lines[0],
                "unbalanced quotes: a quote opened on this line is never "
                f"closed; the {len(lines) - 1} following line(s) were read one by one",
                "csv_unbalanced_quote",
            )
        )
        for k, line in enumerate(lines[1:], 1):
            if line.strip():
                _reread_line(line, pos + k, len(src.columns), recovered, tail_failures)
    if recovered or tail_failures:
        frame = pd.DataFrame([f for _, f in recovered], columns=src.columns).astype(pd.StringDtype("pyarrow"))
        yield RawChunk(frame, np.asarray([p for p, _ in recovered], dtype=np.int64), tail_failures)


_FIELD_OPENS_QUOTE = re.compile(r'(?:^|,)"')


def _unclosed_quote_tail(src: SourceFile) -> tuple[str, list[str]] | None:
    """(text before the record whose quote is never closed, that record's physical lines), or None.

    Only files with an odd number of quote characters are scanned (counting is cheap; the scan decodes the
    file). A quote opens only at the start of a field, so a literal quote inside a value (24" screen) is not
    mistaken for one.
    """
    count = 0
    with src.body.open("rb") as fh:
        while block := fh.read(BLOCK):
            count += block.count(b'"')
    if count % 2 == 0:
        return None
    text = decoded_text(src)
    inside, offset, record_start = False, 0, 0
    for line in text.splitlines(keepends=True):
        if not inside:
            record_start = offset
        offset += len(line)
        if not inside and '"' not in line:
            continue
        i = 0
        while True:
            if inside:
                j = line.find('"', i)
                while j != -1 and line.startswith('""', j):
                    j = line.find('"', j + 2)
                if j == -1:
                    break
                inside, i = False, j + 1
            else:
                m = _FIELD_OPENS_QUOTE.search(line, i)
                if m is None:
                    break
                inside, i = True, m.end()
    if (
        not inside or record_start == 0
    ):  # balanced after all, or the quote is in the header (rejected earlier)
        return None
    return text[:record_start], text[record_start:].splitlines()


def _reread_line(
    line: str, pos: int, ncols: int, good: list[tuple[int, list[str]]], failures: list[ParseFailure]
) -> None:
    """Parse one physical line as a record of its own (after an unclosed quote swallowed it)."""
    try:
        fields = next(csv.reader([line], strict=True))
    except csv.Error as exc:
        failures.append(ParseFailure(pos, line, f"unbalanced quotes: {exc}", "csv_unbalanced_quote"))
        return
    if len(fields) != ncols:
        failures.append(
            ParseFailure(
                pos,
                line,
                f"expected {ncols} fields, found {len(fields)} (unbalanced quotes or a stray delimiter)",
                "csv_field_count",
            )
        )
        return
    good.append((pos, fields))
