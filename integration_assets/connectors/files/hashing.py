"""The identity of a file: its SHA-256 (and, in the same pass, whether it is valid UTF-8).

Kept free of pandas and Arrow so that recognising a re-sent export costs one pass over its bytes, not the
import of the whole pipeline.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

BLOCK = 8 << 20

# The same file is hashed by the sync (is it new?), by the raw asset and by inspect(): one pass per process is
# enough. Keyed by what identifies unchanged bytes on disk; a file moved to archive/ misses and is re-read.
_HASHES: dict[tuple[str, int, int, int, int], tuple[str, bool | None]] = {}


def _stat_key(path: Path) -> tuple[str, int, int, int, int]:
    st = path.stat()
    # ctime too: a writer can restore a file's mtime (cp -p, touch -r), not its ctime.
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _remember(key: tuple[str, int, int, int, int], sha: str, utf8: bool | None) -> None:
    if len(_HASHES) > 10_000:
        _HASHES.clear()
    _HASHES[key] = (sha, utf8)


def _hash(path: Path, check_utf8: bool) -> tuple[str, bool | None]:
    """(SHA-256, valid UTF-8 or None when not checked), from the cache when the file is unchanged."""
    key = _stat_key(path)
    known = _HASHES.get(key)
    if known is not None and (known[1] is not None or not check_utf8):
        return known
    # Asked for UTF-8 validity of a file hashed before: one pass for the validity alone.
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid: bool | None = True if check_utf8 else None
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            if known is None:
                digest.update(block)
            if valid:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError:
                    valid = False
    if valid:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
    sha = known[0] if known is not None else digest.hexdigest()
    _remember(key, sha, valid)
    return sha, valid


def hash_and_check_utf8(path: Path) -> tuple[str, bool]:
    """One pass over the file: its SHA-256 and whether it is valid UTF-8."""
    sha, valid = _hash(path, check_utf8=True)
    return sha, bool(valid)


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (the identity of an export, whatever its name)."""
    return _hash(path, check_utf8=False)[0]


def snapshot(path: Path, dest: Path) -> tuple[str, int]:
    """Copy ``path`` to ``dest`` and hash the bytes copied, in one pass; returns (SHA-256, size) of the copy.

    A load reads the copy, so what it loads is exactly what was hashed even if a writer is still appending to
    the original (the inbox compares the original's hash afterwards). The copy's hash is cached under the copy's
    own stat, so inspecting it does not read it again.
    """
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as src, dest.open("xb") as out:
        while block := src.read(BLOCK):
            digest.update(block)
            out.write(block)
            size += len(block)
    sha = digest.hexdigest()
    _remember(_stat_key(dest), sha, None)
    return sha, size
