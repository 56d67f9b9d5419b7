"""Copies of the subject's values in the small text stores: the alert log (append-only JSON lines), the
reasons of rejected files and the connectors' cursor state. Values are replaced in place; nothing is parsed."""

from __future__ import annotations

import re
from pathlib import Path

from integration_assets.erasure.files import files_under, replace_atomically
from integration_assets.privacy.subjects import redact_text
from integration_assets.settings import Settings


def text_stores(settings: Settings) -> list[Path]:
    """Small text stores that may hold a copy of a value: the alert log, rejected-file reasons, cursors."""
    out = [settings.alert_log]
    out += [p for p in files_under(settings.rejected_dir) if p.name.endswith(".reason.json")]
    out += list(files_under(settings.connector_state_dir))
    return [p for p in out if p.is_file()]


def scrub_text_file(path: Path, patterns: list[re.Pattern[str]], dry_run: bool) -> int:
    """Replace the values in a text file; lines appended meanwhile (the alert log is append-only) are kept:
    the file is re-read when it grew before the rename."""
    for _ in range(5):
        before = path.stat().st_size
        data = path.read_bytes()
        text = data.decode("utf-8", "surrogateescape")
        new, n = redact_text(text, patterns)
        if not n or dry_run:
            return n
        if path.stat().st_size != before:
            continue
        replace_atomically(path, new.encode("utf-8", "surrogateescape"))
        return n
    raise OSError(f"{path.name} kept growing while it was being re-written")
