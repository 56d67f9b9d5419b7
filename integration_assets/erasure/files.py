"""Erasure in the file stores: the archive (``archive/<system>/<entity>/<day>/<sha12>__<name>``) and
``rejected/``.

A file is re-written without the subject's records (CSV rows, JSON/JSONL records, Parquet rows), in its own
encoding, quoting and compression (gzip, zip), then any remaining copy of a personal value (another record's
free text, a line that does not parse) is replaced by ``[erased]``. The new file replaces the old one
atomically (temporary file, fsync, rename) under the same name: the name's hash prefix and the ``loads``
ledger keep the hash of the content that was loaded, so the original export dropped again is still known as
already loaded (``duplicate_file``), and the erasure's audit row records both hashes of every file it
re-wrote (docs/PRIVACY.md).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from integration_assets.erasure.formats import FormatRedactor

# A number standing alone (not inside a word or a longer number), leading zeros and a zero fraction or
# exponent aside: how an id can be written in any of the formats.
_TOKEN = re.compile(rb"(?<![0-9A-Za-z.])0*([1-9][0-9]*|0)(?:\.0*|[eE]\+?0+)?(?![0-9A-Za-z])")


@dataclass
class FileResult:
    """What the erasure did (or would do) to one file; paths are relative to the store's root."""

    store: str  # archive | rejected
    path: str
    records: int = 0  # the subject's records removed
    values: int = 0  # other copies of a personal value replaced
    sha256_before: str = ""
    sha256_after: str | None = None
    unparsed: bool = False  # not readable as its format: only values were searched

    @property
    def changed(self) -> bool:
        return self.records > 0 or self.values > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _searchable(data: bytes) -> bytes | None:
    """``data`` as a byte search sees it (gzip decompressed), or None when a byte search cannot rule anything
    out: zip and Parquet (compressed inside), UTF-16, a gzip that does not decompress."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PAR1" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None
    return data


class FileRedactor(FormatRedactor):
    """Removes the subjects' records from files of their entity, and copies of personal values anywhere."""

    # -- files ---------------------------------------------------------------------------------------------
    def collect(self, path: Path, *, by_id: bool) -> set[str]:
        """Personal values of the subject's records in ``path`` (read only)."""
        data = path.read_bytes()
        if not (by_id and self.may_hold_ids(data)) and not self.may_hold_values(data):
            return set()
        self._collecting = True
        try:
            return self._content(path.name, data, by_id).found
        finally:
            self._collecting = False

    def may_hold_values(self, data: bytes) -> bool:
        """Whether ``data`` (gzip decompressed) can hold one of the values (``self.values``), in UTF-8 or the
        fallback encoding, any case. Zip, Parquet and UTF-16 files: yes."""
        if not self.values:
            return False
        searchable = _searchable(data)
        if searchable is None:
            return True
        low = searchable.lower()
        for value in self.values:
            for enc in ("utf-8", self.fallback):
                if value.lower().encode(enc, "ignore") in low:
                    return True
        return False

    def may_hold_ids(self, data: bytes) -> bool:
        """Whether ``data`` (gzip decompressed) can hold one of the ids at all: a number, maybe with leading
        zeros or a zero fraction/exponent, not part of a longer token. Zip and Parquet are compressed inside: yes.
        Lets an archived export without an erased record skip the parse."""
        searchable = _searchable(data)
        if searchable is None:
            return True
        # As a token of its own: "a7001@x.com" or "17001" is not the id; "07001", "7001.0", "7001e0" may be.
        # An alternation is fast for a few ids (~1 s for 50 MB) and slower than the parse for thousands.
        if len(self.ids) > 50:
            return True
        if not any(i.encode() in searchable for i in self.ids):  # a substring search first: ~20 ms for 50 MB
            return False
        ids = b"|".join(re.escape(i.encode()) for i in sorted(self.ids, key=len, reverse=True))
        return (
            re.search(_TOKEN.pattern.replace(rb"([1-9][0-9]*|0)", rb"(?:" + ids + rb")"), searchable)
            is not None
        )

    def redact(self, path: Path, store: str, root: Path, *, by_id: bool, dry_run: bool) -> FileResult:
        """Re-write ``path`` without the subject's records and copies of its values; ``self.found`` is then the
        personal values of the records removed (in memory only)."""
        data = path.read_bytes()
        self.found = set()
        if not (by_id and self.may_hold_ids(data)) and not self.may_hold_values(data):
            return FileResult(
                store, str(path.relative_to(root)), sha256_before=hashlib.sha256(data).hexdigest()
            )
        res = self._content(path.name, data, by_id)
        self.found = res.found
        result = FileResult(
            store,
            str(path.relative_to(root)),
            res.records,
            res.values,
            hashlib.sha256(data).hexdigest(),
            unparsed=res.unparsed,
        )
        if result.changed:
            result.sha256_after = hashlib.sha256(res.data).hexdigest()
            if not dry_run:
                replace_atomically(path, res.data)
        return result


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` next to ``path`` (hidden name), fsync, rename over it, fsync the folder."""
    tmp = path.with_name(f".{path.name}.erasing")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def files_under(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` (symlinks are not followed: the stores hold only files we moved there)."""
    if not root.is_dir():
        return
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and not p.name.endswith(".erasing"):
            yield p
