"""Canary personal data, and a scan of every store for it: every text (and binary) column of every table in
the warehouse (reflected, so tables no module imported count too), every file under the data dir (gzip and
zip decompressed), and any captured log text."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from integration_assets.warehouse.db import get_engine

CANARY_ID = "7001"
CANARY_EMAIL = "zephyrina.canary-7f3a9@example.test"
CANARY_FIRST = "Zephyrina"
CANARY_LAST = "Quillfeather"
CANARY_PHONE = "+44 7700 900461"
CANARIES = (CANARY_EMAIL, CANARY_FIRST, CANARY_LAST, CANARY_PHONE, "7700 900461")

HEADER = (
    '"Record ID","First Name","Last Name","Email","Phone Number","Lead Status","Create Date",'
    '"Lifecycle Stage","Country/Region","Last Modified Date"'
)


def csv_row(
    rid: str,
    first: str,
    last: str,
    email: str,
    phone: str,
    stage: str = "Lead",
    modified: str = "2024-02-01 10:00",
) -> str:
    return f'"{rid}","{first}","{last}","{email}","{phone}","New","2024-01-02 10:00","{stage}","France","{modified}"'


def canary_row(stage: str = "Lead", modified: str = "2024-02-01 10:00") -> str:
    return csv_row(CANARY_ID, CANARY_FIRST, CANARY_LAST, CANARY_EMAIL.upper(), CANARY_PHONE, stage, modified)


def other_row(modified: str = "2024-02-01 10:00") -> str:
    return csv_row("7002", "Ann", "Lee", "ann.lee@example.com", "+1 555-0101", "Customer", modified)


def _hits(where: str, text: str) -> list[str]:
    low = text.lower()
    return [f"{where}: {c!r}" for c in CANARIES if c.lower() in low]


def _file_text(data: bytes, name: str) -> str:
    if data[:2] == b"\x1f\x8b":
        return _file_text(gzip.decompress(data), name.removesuffix(".gz"))
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "\n".join(_file_text(z.read(n), n) for n in z.namelist())
    return data.decode("utf-8", "replace")


def scan(
    url: str, data_dir: Path, texts: Iterable[tuple[str, str]] = (), *, db_files: bool = False
) -> list[str]:
    """Every place a canary is still found (empty: nowhere). ``db_files``: the SQLite database files' bytes
    too (free pages, the write-ahead log)."""
    hits: list[str] = []
    engine = get_engine(url)
    with engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            for row in conn.execute(sa.select(table)):
                for col, value in row._mapping.items():
                    if isinstance(value, bytes | memoryview):
                        hits += _hits(f"{name}.{col}", bytes(value).decode("utf-8", "replace"))
                    elif isinstance(value, str):
                        hits += _hits(f"{name}.{col}", value)
    for path in sorted(data_dir.rglob("*")):
        # The SQLite database is scanned through SQL above; its bytes only on request (docs/PRIVACY.md).
        if path.is_file() and (db_files or not path.name.startswith("warehouse.db")):
            hits += _hits(str(path.relative_to(data_dir)), _file_text(path.read_bytes(), path.name))
    for where, text in texts:
        hits += _hits(where, text)
    return hits
