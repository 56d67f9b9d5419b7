"""A file's text encoding: UTF-8, the fallback encoding, or UTF-8 with stray bytes (``mixed``).

Bytes that do not decode travel on as private-use code points (``contracts.records``), so that the row holding
them is quarantined instead of the file.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING

from integration_assets.contracts.records import BAD_BYTE_MAX, BAD_BYTE_MIN, PUA_ERRORS, FileRejected

if TYPE_CHECKING:
    from integration_assets.connectors.files.source import SourceFile


def head_is_utf8(path: Path) -> bool:
    """The first MiB (the header and the first records) decodes as UTF-8; a character cut at the end is fine."""
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 1 << 20)
    except UnicodeDecodeError:
        return False
    return True


def classify_non_utf8(path: Path, fallback: str) -> str:
    """A file that is not UTF-8 is either wholly in the fallback encoding, or UTF-8 with some stray bytes."""
    text = path.read_bytes().decode("utf-8", errors=PUA_ERRORS)
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


def decoded_text(src: SourceFile) -> str:
    data = src.body.read_bytes()
    if src.encoding == "utf-8":
        return data.decode("utf-8-sig")
    if src.encoding == "mixed":
        return data.decode("utf-8", errors=PUA_ERRORS).lstrip("\ufeff")
    return data.decode(src.encoding)
