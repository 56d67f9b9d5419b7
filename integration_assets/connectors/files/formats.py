"""Which file formats are read, and how a delivered file is packed (plain, gzip, or a zip of one export).

The format comes from the name (``contacts.csv``, ``contacts.csv.gz``); whether a file is compressed, from its
first bytes. Other compressions and archives are recognised and rejected as ``compressed``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from integration_assets.contracts.records import FileRejected

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


def sniff(path: Path) -> str | None:
    """The compression or archive format the file's first bytes announce, or None."""
    with path.open("rb") as fh:
        head = fh.read(16)
    if _BZIP2_MAGIC.match(head):
        return "bzip2"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def format_of(name: str) -> str | None:
    return FORMATS_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())


def detect_format(path: Path) -> tuple[str | None, str | None]:
    """(packing, format) of a delivered file: its content's format and, if compressed, gzip or zip.

    The format comes from the name (``contacts.csv``, ``contacts.csv.gz``); whether it is compressed from the
    first bytes, so a gzip file named ``.csv`` is read as gzip. A zip archive's format is that of its one
    member (None here; decided by ``_unpack_zip``)."""
    suffixes = [x.lower() for x in path.suffixes]
    last = suffixes[-1] if suffixes else ""
    sniffed = sniff(path)
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
