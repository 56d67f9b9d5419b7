"""Reading export files (CSV, JSON, JSONL, Parquet) in bounded chunks, with every record accounted for.

A file either cannot be read at all (``FileRejected``, with a specific reason: empty, too large, too wide,
duplicate headers, truncated JSON, compressed in a way that cannot be read, …) or yields chunks of raw records
plus the records that could not be parsed (``ParseFailure``: wrong column count, unbalanced quotes, invalid
JSON line). A gzip file or a zip archive of one export is read as the export it holds (unpacked to a temporary
file, the size limit applying to what it unpacks to); its identity stays the hash of the bytes delivered.
Nothing here knows about contracts or Dagster.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import os
import re
import tempfile
import threading
import time
import weakref
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from integration_assets.connectors.hashing import _BLOCK, content_hash, hash_and_check_utf8
from integration_assets.errors import TerminalError, TransientError

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
# Packings read as the export they hold: gzip (one file) and zip (an archive of exactly one export file).
PACKING_SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".zip": "zip"}
# Compressions and archives that are recognised (by name or by their first bytes) and rejected as `compressed`.
OTHER_PACKING_SUFFIXES = {
    ".bz2": "bzip2",
    ".xz": "xz",
    ".lzma": "lzma",
    ".zst": "zstd",
    ".lz4": "lz4",
    ".br": "brotli",
    ".z": "compress (.Z)",
    ".7z": "7z",
    ".rar": "rar",
    ".tar": "tar",
    ".tgz": "tar.gz",
}
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),  # an empty archive
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x1f\x9d", "compress (.Z)"),
)
_BZIP2_MAGIC = re.compile(rb"^BZh[1-9]1AY&SY")
_UNPACK_BLOCK = 1 << 20  # decompressed bytes per read: a bomb is stopped within 1 MiB of the limit
# Bytes that are not valid in the file's encoding are carried through parsing as these private-use code points
# so that the row holding them can be quarantined (and the bytes shown) instead of failing the whole file.
_PUA_BASE = 0xF700
BAD_BYTE_MIN, BAD_BYTE_MAX = chr(_PUA_BASE), chr(_PUA_BASE + 0xFF)
MAX_JSON_DEPTH = 64


def _pua_handler(err: UnicodeError) -> tuple[str | bytes, int]:
    assert isinstance(err, UnicodeDecodeError)  # registered for decoding only
    bad = err.object[err.start : err.end]
    return "".join(chr(_PUA_BASE + b) for b in bad), err.end


codecs.register_error("integration_assets_pua", _pua_handler)


def restore_bad_bytes(text: str, fallback: str) -> str:
    """Show the private-use markers as the fallback-decoded characters they stand for."""
    out = []
    for ch in text:
        o = ord(ch)
        if _PUA_BASE <= o <= _PUA_BASE + 0xFF:
            out.append(bytes([o - _PUA_BASE]).decode(fallback, errors="replace"))
        else:
            out.append(ch)
    return "".join(out)


class UnpackFailed(TransientError):
    """The unpacked copy of a compressed file could not be written (temporary folder full or unwritable): a
    fault of this machine, not of the file, so the load fails and is retried instead of rejecting the file."""


class EncodingUnverified(Exception):
    """A CSV file read as UTF-8 before its bytes were checked turned out not to read as UTF-8 (or not to
    read at all): the load starts again from ``inspect(..., verify_utf8=True)``."""


class FileRejected(TerminalError):
    """The file as a whole cannot be loaded; ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParseFailure:
    position: int  # 1-based record number in the file
    raw: str  # the record's text as read
    reason: str
    check: str = "parse"


@dataclass
class RawChunk:
    frame: pd.DataFrame  # one column per source column; strings (CSV) or JSON values (JSON/JSONL)
    positions: np.ndarray  # 1-based record numbers, aligned with frame rows
    failures: list[ParseFailure] = field(default_factory=list)


@dataclass
class SourceFile:
    """An inspected file: format, encoding, header and content hash known; records not read yet.

    ``path`` is the file as delivered (its name goes into dead letters, ``sha256`` and ``size`` are of its
    bytes); ``data_path`` is what the records are read from: the same file, or for a gzip/zip file the
    export it unpacked to (a temporary file removed when this object goes away).
    """

    path: Path
    format: str
    size: int
    sha256: str
    encoding: str  # utf-8 | <fallback> | mixed
    columns: list[str]
    fallback_encoding: str = "cp1252"
    utf8_verified: bool = True  # False: read as UTF-8 on trust (a CSV whose head is UTF-8), see inspect()
    packing: str | None = None  # gzip | zip when the delivered file is compressed
    data_path: Path | None = None
    content_bytes: int = 0  # bytes of the export itself (after unpacking)
    max_columns: int = 0  # JSON records wider than this reject the file (CSV/Parquet are checked by inspect)

    @property
    def body(self) -> Path:
        """The file the records are read from."""
        return self.data_path or self.path

    def chunks(self, chunk_rows: int) -> Iterator[RawChunk]:
        if self.format == "csv":
            try:
                yield from _csv_chunks(self, chunk_rows)
            except (FileRejected, pa.ArrowInvalid, UnicodeDecodeError) as exc:
                if self.utf8_verified:
                    raise
                # Invalid UTF-8 past the first MiB, or a broken record whose bytes pyarrow could not hand to the
                # row handler: decided again on a checked file (a broken UTF-8 file is rejected then).
                raise EncodingUnverified(f"{type(exc).__name__}: {exc}") from exc
        elif self.format == "jsonl":
            yield from _jsonl_chunks(self, chunk_rows)
        elif self.format == "json":
            yield from _json_chunks(self, chunk_rows)
        elif self.format == "parquet":
            yield from _parquet_chunks(self, chunk_rows)
        else:  # pragma: no cover - inspect() only returns known formats
            raise FileRejected("unsupported_format", f"unsupported format {self.format}")


def _sniff(path: Path) -> str | None:
    """The compression or archive format the file's first bytes announce, or None."""
    with path.open("rb") as fh:
        head = fh.read(16)
    if _BZIP2_MAGIC.match(head):
        return "bzip2"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _format_of(name: str) -> str | None:
    return FORMATS_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())


def detect_format(path: Path) -> tuple[str | None, str | None]:
    """(packing, format) of a delivered file: its content's format and, if compressed, gzip or zip.

    The format comes from the name (``contacts.csv``, ``contacts.csv.gz``); whether it is compressed from the
    first bytes, so a gzip file named ``.csv`` is read as gzip. A zip archive's format is that of its one
    member (None here; decided by ``_unpack_zip``)."""
    suffixes = [x.lower() for x in path.suffixes]
    last = suffixes[-1] if suffixes else ""
    sniffed = _sniff(path)
    if last in OTHER_PACKING_SUFFIXES or (
        sniffed not in (None, "gzip", "zip") and last in (*FORMATS_BY_SUFFIX, *PACKING_SUFFIXES)
    ):
        kind = OTHER_PACKING_SUFFIXES.get(last) or sniffed
        raise FileRejected(
            "compressed",
            f"the file is {kind}-compressed (or archived); only gzip (.gz) and a zip "
            "archive of one export file are read: deliver it uncompressed or as gzip",
        )
    if last in PACKING_SUFFIXES:
        named = PACKING_SUFFIXES[last]
        if named == "zip" or sniffed == "zip":
            if sniffed != "zip":
                raise FileRejected("corrupt_compressed", "the file is named .zip but is not a zip archive")
            return "zip", None
        inner = FORMATS_BY_SUFFIX.get(suffixes[-2]) if len(suffixes) > 1 else None
        if len(suffixes) > 1 and suffixes[-2] == ".tar":
            raise FileRejected(
                "compressed",
                "the file is a tar archive; only gzip (.gz) and a zip archive of one "
                "export file are read: deliver the export itself, or gzip it",
            )
        if inner is None:
            raise FileRejected(
                "unsupported_format",
                f"a compressed file must name the format it holds, e.g. contacts.csv.gz; expected one of "
                f"{sorted(s + '.gz' for s in FORMATS_BY_SUFFIX)}",
            )
        if sniffed != "gzip":  # a damaged gzip, or a plain file misnamed: reading it as text would mislead
            raise FileRejected(
                "corrupt_compressed",
                "the file is named .gz but does not start with the gzip "
                "signature: a damaged gzip file, or not compressed at all",
            )
        return "gzip", inner
    fmt = FORMATS_BY_SUFFIX.get(last)
    if fmt is None:
        raise FileRejected(
            "unsupported_format",
            f"unsupported file type {path.suffix or '(none)'!r}; expected one of {sorted(FORMATS_BY_SUFFIX)}"
            f" (or one of them as .gz, or in a .zip)",
        )
    return (sniffed if sniffed in ("gzip", "zip") else None), fmt


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


_UNPACKED_PREFIX = "integration-assets-unpacked-"
_UNPACKED_STALE_SECONDS = 86400  # no load runs this long; older copies were left by a killed process


def _sweep_stale_unpacked() -> None:
    """Remove unpacked copies a killed process left behind (one removed when its SourceFile goes away
    otherwise); each can be as large as the size limit."""
    cutoff = time.time() - _UNPACKED_STALE_SECONDS
    for old in Path(tempfile.gettempdir()).glob(_UNPACKED_PREFIX + "*"):
        try:
            if old.is_file() and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # gone meanwhile, or not ours to remove


class _Unpacked:
    """Decompressed bytes written to a temporary file, within a size limit, checked for UTF-8 on the way."""

    def __init__(self, suffix: str, max_bytes: int) -> None:
        _sweep_stale_unpacked()
        fd, name = tempfile.mkstemp(prefix=_UNPACKED_PREFIX, suffix=suffix)
        self.path = Path(name)
        self._out = os.fdopen(fd, "wb")
        self.max_bytes = max_bytes
        self.size = 0
        self._decoder: Any = codecs.getincrementaldecoder("utf-8")()
        self.utf8 = True

    def copy(self, stream: _Reader, what: str) -> None:
        while block := stream.read(_UNPACK_BLOCK):  # bounded reads: never more than a block past the limit
            self.size += len(block)
            if self.max_bytes and self.size > self.max_bytes:
                raise FileRejected(
                    "file_too_large",
                    f"the {what} unpacks to more than {self.max_bytes} bytes, the "
                    "configured limit (which applies to the unpacked content); stopped reading there",
                )
            try:
                self._out.write(block)
            except OSError as exc:  # not the file's fault: kept apart from the read errors that reject it
                raise UnpackFailed(f"cannot write the unpacked copy to {self.path.parent}: {exc}") from exc
            if self.utf8:
                try:
                    self._decoder.decode(block)
                except UnicodeDecodeError:
                    self.utf8 = False
        if self.utf8:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.utf8 = False
        self._out.close()

    def discard(self) -> None:
        self._out.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def _discarded_on_error(out: _Unpacked) -> Iterator[None]:
    """Remove the partial copy when its writing fails in any way (a rejected file, a full disk, an interrupt)."""
    try:
        yield
    except BaseException:
        out.discard()
        raise


def _unpack(path: Path, packing: str, fmt: str | None, max_bytes: int) -> tuple[_Unpacked, str]:
    """The export inside a gzip file or zip archive, unpacked to a temporary file; (unpacked, its format)."""
    if packing == "gzip":
        assert fmt is not None
        out = _Unpacked(f".{fmt}", max_bytes)
        with _discarded_on_error(out):
            try:
                with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    out.copy(gz, "gzip file")
            except EOFError as exc:
                raise FileRejected(
                    "corrupt_compressed",
                    "the gzip file is truncated: it ends before its "
                    "end-of-stream marker (was it copied completely?); nothing was loaded",
                ) from exc
            except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                raise FileRejected(
                    "corrupt_compressed", f"the gzip file cannot be decompressed: {exc}"
                ) from exc
        return out, fmt
    return _unpack_zip(path, max_bytes)


def _unpack_zip(path: Path, max_bytes: int) -> tuple[_Unpacked, str]:
    try:
        zf = zipfile.ZipFile(path)
    except NotImplementedError as exc:  # e.g. a zip version or feature the reader does not implement
        raise FileRejected(
            "compressed", f"the zip archive uses a feature that cannot be read: {exc}"
        ) from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise FileRejected("corrupt_compressed", f"not a readable zip archive (truncated?): {exc}") from exc
    with zf:
        # Folders, and the resource forks macOS adds to the archives it makes, are not exports.
        members = [m for m in zf.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        if len(members) != 1:
            listed = ", ".join(repr(m.filename) for m in members[:5]) + (", …" if len(members) > 5 else "")
            raise FileRejected(
                "compressed",
                f"the zip archive holds {len(members)} files ({listed or 'none'}); "
                "exactly one export file per zip is read",
            )
        member = members[0]
        fmt = _format_of(member.filename)
        if fmt is None:
            raise FileRejected(
                "compressed",
                f"the zip archive holds {member.filename!r}, which is not one of "
                f"{sorted(FORMATS_BY_SUFFIX)} (an archive inside an archive is not read)",
            )
        if member.flag_bits & 0x1:
            raise FileRejected("compressed", "the zip archive is encrypted")
        if max_bytes and member.file_size > max_bytes:
            raise FileRejected(
                "file_too_large",
                f"the zip archive's {member.file_size}-byte file is over the "
                f"configured limit of {max_bytes} (which applies to the unpacked content)",
            )
        out = _Unpacked(f".{fmt}", max_bytes)
        with _discarded_on_error(out):
            try:
                with zf.open(member) as fh:
                    out.copy(
                        fh, "zip archive"
                    )  # the size in the archive's directory may lie: counted as read
            except (NotImplementedError, RuntimeError) as exc:  # RuntimeError: a password is needed
                raise FileRejected(
                    "compressed", f"the zip archive uses a compression method that cannot be read: {exc}"
                ) from exc
            except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
                raise FileRejected(
                    "corrupt_compressed", f"the zip archive is corrupt or truncated: {exc}"
                ) from exc
    return out, fmt


def inspect(
    path: Path,
    *,
    max_bytes: int,
    fallback_encoding: str = "cp1252",
    verify_utf8: bool = True,
    max_columns: int | None = None,
) -> SourceFile:
    """Check size, format, encoding and header without reading the records. Raises FileRejected.

    ``verify_utf8=False`` skips the pass that decodes a whole CSV file when its first MiB is UTF-8: the CSV
    reader checks every value it converts, and raises ``EncodingUnverified`` if the rest is not UTF-8 after
    all (the caller then inspects again with the check). Saves ~0.4 s per 200 MiB of a well-formed export.

    ``max_columns`` (default: INTEGRATION_MAX_COLUMNS) rejects a file wider than that from its header or
    Parquet schema, before any record is parsed. A compressed file is unpacked first; ``max_bytes`` then
    applies to the unpacked content as well."""
    if max_columns is None:
        from integration_assets.settings import get_settings

        max_columns = get_settings().max_columns
    packing, fmt = detect_format(path)
    size = path.stat().st_size
    if size == 0:
        raise FileRejected("empty_file", "the file is empty (0 bytes)")
    if max_bytes and size > max_bytes:
        raise FileRejected(
            "file_too_large", f"the file has {size} bytes, over the configured limit of {max_bytes}"
        )
    if packing is None:
        assert fmt is not None
        verified = verify_utf8 or fmt != "csv" or not _head_is_utf8(path)
        sha, utf8 = hash_and_check_utf8(path) if verified else (content_hash(path), True)
        return _inspect_body(
            path, path, fmt, size, sha, utf8, verified, size, None, fallback_encoding, max_columns, max_bytes
        )
    unpacked, fmt = _unpack(path, packing, fmt, max_bytes)
    try:
        if unpacked.size == 0:
            raise FileRejected("empty_file", f"the {packing} file unpacks to an empty file (0 bytes)")
        src = _inspect_body(
            path,
            unpacked.path,
            fmt,
            size,
            content_hash(path),
            unpacked.utf8,
            True,
            unpacked.size,
            packing,
            fallback_encoding,
            max_columns,
            max_bytes,
        )
    except BaseException:
        unpacked.discard()
        raise
    weakref.finalize(src, unpacked.path.unlink, missing_ok=True)
    return src


def _inspect_body(
    path: Path,
    body: Path,
    fmt: str,
    size: int,
    sha: str,
    utf8: bool,
    verified: bool,
    content_bytes: int,
    packing: str | None,
    fallback_encoding: str,
    max_columns: int,
    max_bytes: int,
) -> SourceFile:
    if content_bytes == len(codecs.BOM_UTF8) and fmt != "parquet" and body.read_bytes() == codecs.BOM_UTF8:
        raise FileRejected("empty_file", "the file holds only a byte-order mark (an empty export)")
    encoding = "utf-8"
    if not utf8 and fmt != "parquet":
        encoding = _classify_non_utf8(body, fallback_encoding)
    columns: list[str] = []
    if fmt == "csv":
        columns = _csv_header(body, encoding, fallback_encoding, max_columns)
    elif fmt == "parquet":
        columns = _parquet_columns(body, max_columns, max_bytes)
    return SourceFile(
        path,
        fmt,
        size,
        sha,
        encoding,
        columns,
        fallback_encoding,
        utf8_verified=verified,
        packing=packing,
        data_path=body if body != path else None,
        content_bytes=content_bytes,
        max_columns=max_columns,
    )


def _head_is_utf8(path: Path) -> bool:
    """The first MiB (the header and the first records) decodes as UTF-8; a character cut at the end is fine."""
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 1 << 20)
    except UnicodeDecodeError:
        return False
    return True


def _classify_non_utf8(path: Path, fallback: str) -> str:
    """A file that is not UTF-8 is either wholly in the fallback encoding, or UTF-8 with some stray bytes."""
    text = path.read_bytes().decode("utf-8", errors="integration_assets_pua")
    has_real_utf8 = any(ord(ch) > 127 and not (BAD_BYTE_MIN <= ch <= BAD_BYTE_MAX) for ch in text)
    if has_real_utf8:
        return "mixed"
    try:
        path.read_bytes().decode(fallback)
    except UnicodeDecodeError as exc:
        raise FileRejected(
            "bad_encoding", f"the file is neither UTF-8 nor {fallback}: byte {exc.start} cannot be decoded"
        ) from exc
    return fallback


def _decoded_text(src: SourceFile) -> str:
    data = src.body.read_bytes()
    if src.encoding == "utf-8":
        return data.decode("utf-8-sig")
    if src.encoding == "mixed":
        return data.decode("utf-8", errors="integration_assets_pua").lstrip("\ufeff")
    return data.decode(src.encoding)


def _csv_header(path: Path, encoding: str, fallback: str, max_columns: int = 0) -> list[str]:
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
        cut = bool(fh.read(1))  # the file goes on past the first MiB
    enc = "utf-8" if encoding in ("utf-8", "mixed") else encoding
    text = head.decode(enc, errors="integration_assets_pua").lstrip("\ufeff")
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


def _csv_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
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
        stream = io.BytesIO(_decoded_text(src).encode("utf-8"))
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
        while block := fh.read(_BLOCK):
            count += block.count(b'"')
    if count % 2 == 0:
        return None
    text = _decoded_text(src)
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


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted columns (HubSpot ``properties.email``); lists stay values (Odoo many2one)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_record(value, f"{name}."))
        else:
            out[name] = value
    return out


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


def _jsonl_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    text = _decoded_text(src)
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


def _json_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    text = _decoded_text(src)
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


def _flat_fields(schema: pa.Schema, prefix: str = "") -> list[tuple[str, pa.DataType]]:
    """Leaf columns with dotted names, as ``Table.flatten`` names them (nested like flattened JSON records)."""
    out: list[tuple[str, pa.DataType]] = []
    for f in schema:
        if pa.types.is_struct(f.type) and f.type.num_fields:
            out += _flat_fields(pa.schema(list(f.type)), f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f.type))
    return out


def _parquet_columns(path: Path, max_columns: int, max_bytes: int) -> list[str]:
    """The columns of a Parquet file from its footer, after the checks a CSV gets from its size and header."""
    try:
        pf = pq.ParquetFile(path)
        meta, schema = pf.metadata, pf.schema_arrow
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a corrupt file
        raise FileRejected("unreadable_parquet", f"not a readable Parquet file: {exc}") from exc
    if max_columns and meta.num_columns > max_columns:
        raise FileRejected(
            "too_many_columns",
            f"the Parquet file has {meta.num_columns} columns, over the "
            f"configured limit of {max_columns} (INTEGRATION_MAX_COLUMNS)",
        )
    # Parquet is compressed: the size limit applies to what its pages decompress to (the footer says).
    unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max_bytes and unpacked > max_bytes:
        raise FileRejected(
            "file_too_large",
            f"the Parquet file's data decompresses to {unpacked} bytes, over the "
            f"configured limit of {max_bytes} (which applies to the unpacked content)",
        )
    names = [name for name, _ in _flat_fields(schema)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise FileRejected(
                "duplicate_header", f"duplicate column name {name!r}; the mapping would be ambiguous"
            )
        seen.add(name)
    return names


def _parquet_text(values: pa.Array) -> pa.Array:
    """Strings of a Parquet column as UTF-8 text: invalid bytes (Parquet does not check them) are carried as the
    private-use code points the CSV reader uses, so the row holding them is quarantined, not the file."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        try:
            values.validate(full=True)
            return values
        except pa.ArrowInvalid:
            values = values.view(pa.large_binary() if pa.types.is_large_string(values.type) else pa.binary())
    texts = [
        None if b is None else b.decode("utf-8", errors="integration_assets_pua") for b in values.to_pylist()
    ]
    return pa.array(texts, pa.large_string())


def _parquet_frame(batch: pa.RecordBatch) -> pd.DataFrame:
    table = pa.Table.from_batches([batch])
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    columns: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        t = arr.type
        if pa.types.is_dictionary(t):
            arr = arr.dictionary_decode()
            t = arr.type
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
        ):
            text = _parquet_text(arr)
            columns[name] = pd.Series(pd.array(text.cast(pa.large_string()), dtype=pd.StringDtype("pyarrow")))
        elif pa.types.is_integer(t):
            columns[name] = (
                pd.Series(arr.to_pandas(types_mapper={t: pd.Int64Dtype()}.get))
                if t != pa.uint64()
                else pd.Series(arr.to_pylist(), dtype=object)
            )
        elif pa.types.is_timestamp(t):
            # Outside the nanosecond range pandas and the warehouse use (year 9999): handed on as text, so the
            # date parser quarantines the row instead of the conversion failing the file.
            bound = (2**63 - 1) // {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[t.unit]
            span = pc.min_max(arr.view(pa.int64()))
            lo, hi = span["min"].as_py(), span["max"].as_py()
            if lo is None or (-bound < lo and hi < bound):
                columns[name] = pd.Series(arr.to_pandas())
            else:
                columns[name] = pd.Series(arr.cast(pa.string()).to_pylist(), dtype=pd.StringDtype("pyarrow"))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t) or pa.types.is_struct(t):
            columns[name] = pd.Series(
                arr.to_pylist(), dtype=object
            )  # lists as JSON values, like a JSON record's
        else:
            columns[name] = pd.Series(arr.to_pandas())
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def _parquet_chunks(src: SourceFile, chunk_rows: int) -> Iterator[RawChunk]:
    done = 0
    try:
        # Read row group by row group: memory follows the row group and chunk size, not the file's.
        for batch in pq.ParquetFile(src.body).iter_batches(batch_size=chunk_rows):
            frame = _parquet_frame(batch)
            positions = np.arange(done + 1, done + len(frame) + 1, dtype=np.int64)
            done += len(frame)
            yield RawChunk(frame, positions, [])
    except (pa.ArrowException, OSError) as exc:
        # A damaged page is a property of the file, not a transient fault: the whole file is rejected (the load's
        # transaction rolls back what earlier chunks staged).
        raise FileRejected(
            "unreadable_parquet", f"the Parquet file cannot be read past record {done}: {exc}"
        ) from exc
