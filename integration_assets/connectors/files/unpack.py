"""A gzip file or a zip archive of one export, unpacked to a temporary file within the size limit.

The size limit applies to what a file unpacks to, counted as it is read (a decompression bomb stops within
one block of the limit); the unpacked copy is checked for UTF-8 on the way and removed on any failure.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from integration_assets.connectors.files.formats import FORMATS_BY_SUFFIX, format_of
from integration_assets.contracts.records import FileRejected
from integration_assets.errors import TransientError

_UNPACK_BLOCK = 1 << 20  # decompressed bytes per read: a bomb is stopped within 1 MiB of the limit


class UnpackFailed(TransientError):
    """The unpacked copy of a compressed file could not be written (temporary folder full or unwritable): a
    fault of this machine, not of the file, so the load fails and is retried instead of rejecting the file."""


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


def unpack(path: Path, packing: str, fmt: str | None, max_bytes: int) -> tuple[_Unpacked, str]:
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
        fmt = format_of(member.filename)
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
