"""Raw records between the file readers, the event path and the mapping engine.

A reader (``connectors.files``) or the event path hands the mapper ``RawChunk``s: one frame column per source
column, each row's 1-based record number, and the records that could not be parsed (``ParseFailure``).
Bytes that are not valid in a file's encoding travel through parsing as private-use code points (the
``integration_assets_pua`` error handler) so that the mapper can quarantine the row holding them and show the
bytes (``restore_bad_bytes``). Nested JSON objects become dotted columns (``flatten_record``) wherever records
come from. A file that cannot be loaded at all is ``FileRejected``. Imports no pandas at run time: privacy
reads records through ``flatten_record`` alone.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from integration_assets.errors import TerminalError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Bytes that are not valid in the file's encoding are carried through parsing as these private-use code points
# so that the row holding them can be quarantined (and the bytes shown) instead of failing the whole file.
_PUA_BASE = 0xF700
BAD_BYTE_MIN, BAD_BYTE_MAX = chr(_PUA_BASE), chr(_PUA_BASE + 0xFF)
PUA_ERRORS = "integration_assets_pua"  # the codecs error handler that produces them


def _pua_handler(err: UnicodeError) -> tuple[str | bytes, int]:
    assert isinstance(err, UnicodeDecodeError)  # registered for decoding only
    bad = err.object[err.start : err.end]
    return "".join(chr(_PUA_BASE + b) for b in bad), err.end


codecs.register_error(PUA_ERRORS, _pua_handler)


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


class FileRejected(TerminalError):
    """The file as a whole cannot be loaded; ``code`` is a stable machine-readable reason.

    Raised by the readers (empty, too large, unreadable …) and by contract matching (no contract fits)."""

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
