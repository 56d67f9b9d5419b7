"""File formats and bad files at the reader's edges, loaded through the inbox on SQLite and Postgres:
compressed exports (gzip, zip) and the ones that cannot be read, Parquet, files too wide to read, drift of
wide files, and byte-level oddities (a BOM alone, mixed line endings)."""

from __future__ import annotations

import csv
import gc
import gzip
import hashlib
import io
import json
import lzma
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from integration_assets.connectors.files import csv_reader, source, unpack
from integration_assets.contracts.records import FileRejected
from integration_assets.errors import TransientError
from integration_assets.ingest import inbox
from integration_assets.ingest import process as ingest_process
from integration_assets.ingest.load import ingest_file
from integration_assets.settings import get_settings
from integration_assets.warehouse.ledger import LoadReport
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters, loads, schema_drift

CONTACT_HEADER = [
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Lifecycle Stage",
    "Lead Status",
    "Primary Associated Company ID",
    "Country/Region",
    "Create Date",
    "Last Modified Date",
]


def contact(rid: str, first: str = "Ann") -> list[str]:
    return [
        rid,
        first,
        "Smith",
        f"contact.{rid}@example.com",
        "+1 555 0100",
        "Lead",
        "New",
        "9000000001",
        "United States",
        "2026-01-05 09:30",
        "2026-11-20 10:00",
    ]


def contacts_csv(ids: list[str], *, extra: list[str] | None = None, newline: str = "\n") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(CONTACT_HEADER + (extra or []))
    for rid in ids:
        w.writerow(contact(rid) + [""] * len(extra or []))
    return buf.getvalue().encode("utf-8")


def order(oid: int) -> dict[str, Any]:
    return {
        "id": oid,
        "name": f"S{oid:05d}",
        "partner_id": [14, "Azure Interior"],
        "date_order": "2026-11-19 10:00:00",
        "amount_untaxed": 100.0,
        "amount_tax": 10.0,
        "amount_total": 110.0,
        "currency_id": [1, "USD"],
        "state": "sale",
        "invoice_status": "to invoice",
        "client_order_ref": False,
        "write_date": "2026-11-19 12:00:00",
    }


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Unpacked copies go to a folder of this test, so the test can see that none is left behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def drop(system: str, entity: str, name: str, data: bytes) -> inbox.InboxFile:
    path = get_settings().inbox_dir / system / entity / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    return inbox.InboxFile(path, system, entity, st.st_size, st.st_mtime)


def process(f: inbox.InboxFile) -> LoadReport:
    report = ingest_process.process(f)
    assert report.balanced, report.as_dict()
    return report


def table(engine: sa.Engine, name: str) -> dict[str, dict[str, Any]]:
    t = CANONICAL_TABLES[name]
    with engine.connect() as conn:
        return {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(t))}


def letters(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(sa.select(dead_letters).order_by(dead_letters.c.position))
        ]


def no_unpacked_copies(tmp: Path) -> bool:
    gc.collect()
    return list(tmp.iterdir()) == []


# -- compressed exports -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("system", "entity", "name", "make", "table_name"),
    [
        pytest.param(
            "hubspot",
            "contacts",
            "contacts.csv",
            lambda: gzip.compress(contacts_csv(["1", "2"])),
            "contacts",
            id="gzip-named-csv",
        ),
        pytest.param(
            "hubspot",
            "contacts",
            "contacts.csv.gz",
            lambda: gzip.compress(contacts_csv(["1", "2"])),
            "contacts",
            id="csv.gz",
        ),
        pytest.param(
            "odoo",
            "sale.order",
            "orders.jsonl.gz",
            lambda: gzip.compress("".join(json.dumps(order(i)) + "\n" for i in (1, 2)).encode()),
            "sales_orders",
            id="jsonl.gz",
        ),
        pytest.param(
            "odoo",
            "sale.order",
            "orders.json.gz",
            lambda: gzip.compress(json.dumps([order(1), order(2)]).encode()),
            "sales_orders",
            id="json.gz",
        ),
        pytest.param(
            "hubspot",
            "contacts",
            "export.zip",
            lambda: zipped({"contacts.csv": contacts_csv(["1", "2"])}),
            "contacts",
            id="zip-of-one-csv",
        ),
        pytest.param(
            "odoo",
            "sale.order",
            "orders.zip",
            lambda: zipped(
                {
                    "dump/": b"",
                    "dump/orders.json": json.dumps([order(1), order(2)]).encode(),
                    "__MACOSX/dump/._orders.json": b"\x00\x05\x16\x07",
                }
            ),
            "sales_orders",
            id="zip-with-folder-and-macos-fork",
        ),
    ],
)
def test_compressed_exports_load_as_the_format_they_hold(
    engine: sa.Engine, own_tempdir: Path, system: str, entity: str, name: str, make: Any, table_name: str
) -> None:
    data = make()
    report = process(drop(system, entity, name, data))
    assert (report.status, report.rows_read, report.rows_inserted) == ("succeeded", 2, 2), report.as_dict()
    assert sorted(table(engine, table_name)) == ["1", "2"]
    # The identity of the file is the bytes delivered, as the archive keeps them.
    assert report.content_hash == hashlib.sha256(data).hexdigest()
    assert report.file_bytes == len(data)
    [archived] = list((get_settings().archive_dir / system / entity).rglob(f"*__{name}"))
    assert archived.read_bytes() == data
    assert no_unpacked_copies(own_tempdir)
    # The same compressed file again is a duplicate, recognised by that hash.
    again = process(drop(system, entity, name, data))
    assert again.status == "duplicate_file"


def test_the_contract_is_chosen_by_the_format_inside(engine: sa.Engine) -> None:
    """The Odoo JSONL inside a gzip goes to the api contract of its folder; a CSV inside the same folder is
    refused by format, as it would be uncompressed."""
    data = gzip.compress(json.dumps([order(1)]).encode())
    assert process(drop("odoo", "sale.order", "o.json.gz", data)).contract == "odoo.sale.order.api@v1"
    report = process(drop("odoo", "sale.order", "o.csv.gz", gzip.compress(b"id,name\n1,x\n")))
    assert (report.status, report.reason_code) == ("rejected", "no_contract_for_format")


def _truncated_gzip() -> bytes:
    whole = gzip.compress(contacts_csv([str(i) for i in range(1, 2000)]))
    return whole[: len(whole) * 2 // 3]


def _zip_of_a_later_version() -> bytes:
    """An archive whose central directory says it needs zip version 8.9 to extract."""
    data = bytearray(zipped({"contacts.csv": contacts_csv(["1"])}))
    central = data.index(b"PK\x01\x02")
    data[central + 6 : central + 8] = (89).to_bytes(2, "little")
    return bytes(data)


def _zip_whose_directory_lies() -> bytes:
    """One member that unpacks to 4 MiB while the archive says 100 bytes (local header and central directory)."""
    data = bytearray(zipped({"contacts.csv": contacts_csv(["1"]) + b"x" * (4 << 20)}))
    local = data.index(b"PK\x03\x04")
    data[local + 22 : local + 26] = (100).to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "make", "code", "message"),
    [
        pytest.param(
            "contacts.csv.gz",
            _truncated_gzip,
            "corrupt_compressed",
            "gzip file is truncated",
            id="truncated-gzip",
        ),
        pytest.param(
            "contacts.csv",
            lambda: gzip.compress(contacts_csv(["1"]))[:-3] + b"\x00\x00\x00",
            "corrupt_compressed",
            "gzip file cannot be decompressed",
            id="gzip-bad-crc",
        ),
        pytest.param(
            "export.zip",
            lambda: zipped({"a.csv": contacts_csv(["1"]), "b.csv": contacts_csv(["2"])}),
            "compressed",
            "holds 2 files ('a.csv', 'b.csv'); exactly one",
            id="zip-of-two",
        ),
        pytest.param("export.zip", lambda: zipped({}), "compressed", "holds 0 files", id="empty-zip"),
        pytest.param(
            "export.zip",
            lambda: zipped({"contacts.xlsx": b"PK\x03\x04"}),
            "compressed",
            "'contacts.xlsx', which is not one of",
            id="zip-of-xlsx",
        ),
        pytest.param(
            "export.zip",
            lambda: zipped({"contacts.csv.gz": gzip.compress(contacts_csv(["1"]))}),
            "compressed",
            "archive inside an archive",
            id="zip-of-gzip",
        ),
        pytest.param(
            "export.zip",
            lambda: zipped({"contacts.csv": contacts_csv(["1"])})[:60],
            "corrupt_compressed",
            "not a readable zip archive",
            id="truncated-zip",
        ),
        pytest.param(
            "export.zip",
            _zip_whose_directory_lies,
            "corrupt_compressed",
            "corrupt or truncated",
            id="zip-size-lies",
        ),
        pytest.param(
            "export.zip",
            _zip_of_a_later_version,
            "compressed",
            "feature that cannot be read: zip file version 8.9",
            id="zip-version-8.9",
        ),
        pytest.param(
            "contacts.csv.bz2",
            lambda: b"BZh91AY&SY" + b"\x00" * 30,
            "compressed",
            "bzip2-compressed",
            id="bz2-by-name",
        ),
        pytest.param(
            "contacts.csv",
            lambda: lzma.compress(contacts_csv(["1"])),
            "compressed",
            "xz-compressed",
            id="xz-named-csv",
        ),
        pytest.param(
            "contacts.gz",
            lambda: gzip.compress(contacts_csv(["1"])),
            "unsupported_format",
            "must name the format it holds",
            id="gz-without-format",
        ),
        pytest.param(
            "contacts.tar.gz",
            lambda: gzip.compress(contacts_csv(["1"])),
            "compressed",
            "tar archive",
            id="tar.gz",
        ),
        pytest.param(
            "contacts.zip",
            lambda: contacts_csv(["1"]),
            "corrupt_compressed",
            "not a zip archive",
            id="zip-name-plain-bytes",
        ),
        pytest.param(
            "contacts.csv.gz",
            lambda: b"\x1f\x8c" + gzip.compress(contacts_csv(["1"]))[2:],
            "corrupt_compressed",
            "does not start with the gzip signature",
            id="gz-name-bad-signature",
        ),
    ],
)
def test_compressed_files_that_cannot_be_read_are_rejected_with_the_reason(
    engine: sa.Engine, own_tempdir: Path, name: str, make: Any, code: str, message: str
) -> None:
    report = process(drop("hubspot", "contacts", name, make()))
    assert (report.status, report.reason_code) == ("rejected", code), report.as_dict()
    assert message in (report.error or ""), report.error
    assert report.rows_read == 0 and table(engine, "contacts") == {}  # nothing partial committed
    [rejected] = list((get_settings().rejected_dir / "hubspot" / "contacts").glob(name))
    reason = json.loads(rejected.with_name(rejected.name + ".reason.json").read_text())
    assert reason["reason_code"] == code
    assert [d["check_name"] for d in letters(engine)] == [code]
    assert no_unpacked_copies(own_tempdir)


@pytest.mark.parametrize(
    "pack",
    [
        pytest.param(lambda data: ("bomb.csv.gz", gzip.compress(data, 9)), id="gzip"),
        pytest.param(lambda data: ("bomb.zip", zipped({"contacts.csv": data})), id="zip"),
    ],
)
def test_the_size_limit_applies_to_what_a_file_unpacks_to(
    engine: sa.Engine, own_tempdir: Path, monkeypatch: pytest.MonkeyPatch, pack: Any
) -> None:
    """A small file that unpacks to far more than the limit is stopped at the limit, not unpacked whole."""
    monkeypatch.setenv("INTEGRATION_MAX_FILE_BYTES", str(4 << 20))
    name, data = pack(contacts_csv(["1"]) + b"0" * (64 << 20))
    assert len(data) < 1 << 20
    report = process(drop("hubspot", "contacts", name, data))
    assert (report.status, report.reason_code) == ("rejected", "file_too_large"), report.as_dict()
    assert f"limit of {4 << 20}" in (report.error or "") or f"more than {4 << 20} bytes" in (
        report.error or ""
    )
    assert no_unpacked_copies(own_tempdir)


def test_a_gzip_bomb_stops_unpacking_at_the_limit(tmp_path: Path, own_tempdir: Path) -> None:
    """The reader stops within a block of the limit (it does not unpack the whole stream and then compare)."""
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"a" * (256 << 20), 9))
    written: list[int] = []
    real = unpack._Unpacked.copy

    def spy(self: unpack._Unpacked, stream: Any, what: str) -> None:
        try:
            real(self, stream, what)
        finally:
            written.append(self.size)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(unpack._Unpacked, "copy", spy)
        with pytest.raises(FileRejected) as exc:
            source.inspect(path, max_bytes=8 << 20, max_columns=100)
    assert exc.value.code == "file_too_large"
    assert written == [(8 << 20) + unpack._UNPACK_BLOCK]
    assert no_unpacked_copies(own_tempdir)


# -- width ------------------------------------------------------------------------------------------------
def test_a_csv_wider_than_the_limit_is_rejected_from_its_header(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_MAX_COLUMNS", "50")

    def no_body(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the body of a file too wide to load was parsed")

    monkeypatch.setattr(csv_reader.pacsv, "open_csv", no_body)
    report = process(
        drop("hubspot", "contacts", "wide.csv", contacts_csv(["1", "2"], extra=[f"x{i}" for i in range(40)]))
    )
    assert (report.status, report.reason_code) == ("rejected", "too_many_columns"), report.as_dict()
    assert "51 columns, over the configured limit of 50 (INTEGRATION_MAX_COLUMNS)" in (report.error or "")
    assert table(engine, "contacts") == {}


def test_jsonl_records_wider_than_the_limit_reject_the_file(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_MAX_COLUMNS", "30")
    wide = {**order(2), **{f"x_{i}": i for i in range(30)}}
    text = json.dumps(order(1)) + "\n" + json.dumps(wide) + "\n"
    report = process(drop("odoo", "sale.order", "wide.jsonl", text.encode()))
    assert (report.status, report.reason_code) == ("rejected", "too_many_columns"), report.as_dict()
    assert "more than 30 distinct fields (record 2)" in (report.error or "")
    assert table(engine, "sales_orders") == {}


def test_the_width_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().max_columns == 2000
    monkeypatch.setenv("INTEGRATION_MAX_COLUMNS", "0")  # 0: no limit
    assert get_settings().max_columns == 0


def test_drift_of_a_wide_file_is_capped(engine: sa.Engine) -> None:
    """A file with 300 new columns (under the width limit) records the first 100 and one summary finding,
    not 300 rows of schema_drift; a header longer than the drift table's column is cut, not a failed load."""
    long_name = "L" * 300
    extra = [f"x{i:03d}" for i in range(299)] + [long_name]
    report = process(drop("hubspot", "contacts", "wide.csv", contacts_csv(["1"], extra=extra)))
    assert (report.status, report.rows_inserted) == ("succeeded", 1), report.as_dict()
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(schema_drift.c.kind, schema_drift.c.column_name, schema_drift.c.sample).order_by(
                schema_drift.c.id
            )
        ).all()
    kinds = [r.kind for r in found]
    assert kinds == ["new_column"] * 100 + ["new_columns_omitted"]
    assert [r.column_name for r in found[:100]] == extra[:100]
    assert found[100].column_name == "+200 more new columns"
    assert json.loads(found[100].sample) == extra[100:105]
    [summary] = [d for d in report.drift if d["kind"] == "new_columns_omitted"]
    assert summary["count"] == 200


def test_a_new_column_with_a_very_long_name_is_recorded(engine: sa.Engine) -> None:
    long_name = "Notes " + "n" * 294
    report = process(drop("hubspot", "contacts", "long.csv", contacts_csv(["1"], extra=[long_name])))
    assert report.status == "succeeded", report.as_dict()
    with engine.connect() as conn:
        [name] = conn.execute(
            sa.select(schema_drift.c.column_name).where(schema_drift.c.kind == "new_column")
        ).scalars()
    assert name == long_name[:255]


# -- Parquet ----------------------------------------------------------------------------------------------
def parquet_bytes(table_: pa.Table, **kw: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table_, buf, **kw)
    return buf.getvalue()


def hubspot_parquet(n: int = 3, **over: Any) -> pa.Table:
    ts = pd.Timestamp("2026-11-20 10:00", tz="UTC")
    cols: dict[str, Any] = {
        "hs_object_id": pa.array(range(7001, 7001 + n), pa.int64()),
        "lastmodifieddate": pa.array(
            [ts + pd.Timedelta(minutes=i) for i in range(n)], pa.timestamp("ms", tz="UTC")
        ),
        "createdate": pa.array([pd.Timestamp("2026-01-05 09:30")] * n, pa.timestamp("us")),
        "email": [f"Contact.{i}@Example.com" for i in range(n)],
        "firstname": [f"Ann{i}" for i in range(n)],
        "lastname": ["Smith"] * n,
        "phone": [None] * n,
        "lifecyclestage": pa.array(["lead", "customer"] * (n // 2) + ["lead"] * (n % 2)).dictionary_encode(),
        "hs_lead_status": ["NEW"] * n,
        "associatedcompanyid": pa.array([9001] * (n - 1) + [None], pa.int64()),
        "country": ["United States"] * n,
        "hs_email_domain": ["example.com"] * n,
    }
    cols.update(over)
    return pa.table(cols)


def test_a_parquet_export_loads_into_the_warehouse(engine: sa.Engine) -> None:
    report = process(drop("hubspot", "contacts", "contacts.parquet", parquet_bytes(hubspot_parquet())))
    assert (report.status, report.contract, report.rows_read, report.rows_inserted) == (
        "succeeded",
        "hubspot.contacts.parquet@v1",
        3,
        3,
    ), report.as_dict()
    assert report.drift == []
    rows = table(engine, "contacts")
    assert sorted(rows) == ["7001", "7002", "7003"]
    first = rows["7001"]
    assert (
        first["email"],
        first["first_name"],
        first["lifecycle_stage"],
        first["lead_status"],
        first["company_id"],
        first["country"],
    ) == ("contact.0@example.com", "Ann0", "lead", "new", "9001", "United States")
    assert rows["7003"]["company_id"] is None
    assert pd.Timestamp(rows["7002"]["source_updated_at"]).tz_localize(None) == pd.Timestamp(
        "2026-11-20 10:01"
    )
    assert pd.Timestamp(first["created_at"]).tz_localize(None) == pd.Timestamp("2026-01-05 09:30")
    # Parquet and the CSV export of the same contacts merge into one table.
    newer = hubspot_parquet(
        1,
        lastmodifieddate=pa.array([pd.Timestamp("2026-11-21", tz="UTC")], pa.timestamp("ms", tz="UTC")),
        firstname=["Anna"],
    )
    again = process(drop("hubspot", "contacts", "newer.parquet", parquet_bytes(newer)))
    assert (again.rows_updated, table(engine, "contacts")["7001"]["first_name"]) == (1, "Anna")


def test_parquet_values_get_the_same_checks_as_csv(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NUL bytes, bytes that are not UTF-8, oversized values and dates the warehouse cannot hold quarantine
    their row, as in a CSV; ids stored as text or numbers both load."""
    monkeypatch.setenv("INTEGRATION_MAX_FIELD_BYTES", "1000")
    names = [b"Ann", b"Bo\x00b", b"Ren\xe9", b"x" * 2000, b"Dee", b"Eve"]
    offsets = [0]
    for v in names:
        offsets.append(offsets[-1] + len(v))
    # Parquet does not check that a string column holds UTF-8: written as it comes.
    firstname = pa.Array.from_buffers(
        pa.string(),
        len(names),
        [None, pa.array(offsets, pa.int32()).buffers()[1], pa.py_buffer(b"".join(names))],
    )
    base = pd.Timestamp("2026-11-20", tz="UTC").value // 1000
    us = [base, base, base, base, 253_402_214_400_000_000, base]  # the fifth: year 9999
    t = hubspot_parquet(
        6,
        firstname=firstname,
        lastmodifieddate=pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        hs_object_id=pa.array([str(i) for i in range(1, 7)]),
    )
    report = process(drop("hubspot", "contacts", "odd.parquet", parquet_bytes(t)))
    assert (report.status, report.rows_read, report.rows_inserted, report.rows_quarantined) == (
        "succeeded",
        6,
        2,
        4,
    ), report.as_dict()
    found = {
        d["natural_key"]: (d["check_name"], d["column_name"], d["offending_value"]) for d in letters(engine)
    }
    assert found["2"] == ("nul_byte", "firstname", "Bo\\u0000b")
    assert found["3"] == ("invalid_encoding", "firstname", "René")
    assert found["4"][:2] == ("max_length", "firstname")
    [big] = [d for d in letters(engine) if d["natural_key"] == "4"]
    assert "value_too_large" in {e["check"] for e in json.loads(big["errors"])}
    assert found["5"][:2] == ("date_format", "lastmodifieddate")
    assert sorted(table(engine, "contacts")) == ["1", "6"]


def test_parquet_files_that_cannot_be_loaded(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    data = parquet_bytes(
        hubspot_parquet(2000, email=[f"c.{i}@example.com" * 4 for i in range(2000)]), compression="zstd"
    )
    # Width: from the schema in the footer.
    monkeypatch.setenv("INTEGRATION_MAX_COLUMNS", "10")
    report = process(drop("hubspot", "contacts", "wide.parquet", data))
    assert (report.reason_code, report.error) == (
        "too_many_columns",
        "the Parquet file has 12 columns, over the configured limit of 10 (INTEGRATION_MAX_COLUMNS)",
    )
    monkeypatch.delenv("INTEGRATION_MAX_COLUMNS")
    # Size: what the pages decompress to counts, not the compressed file.
    unpacked = sum(
        pq.ParquetFile(io.BytesIO(data)).metadata.row_group(i).total_byte_size
        for i in range(pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups)
    )
    monkeypatch.setenv("INTEGRATION_MAX_FILE_BYTES", str(unpacked - 1))
    assert len(data) < unpacked - 1
    report = process(drop("hubspot", "contacts", "big.parquet", data))
    assert report.reason_code == "file_too_large" and f"decompresses to {unpacked} bytes" in (
        report.error or ""
    )
    monkeypatch.delenv("INTEGRATION_MAX_FILE_BYTES")
    # A cut file has no footer.
    report = process(drop("hubspot", "contacts", "cut.parquet", data[: len(data) // 2]))
    assert report.reason_code == "unreadable_parquet"
    assert table(engine, "contacts") == {}


def test_a_parquet_file_damaged_after_its_first_row_group_loads_nothing(engine: sa.Engine) -> None:
    """The first row group reads, the second cannot: the file is rejected and the first group's rows, already
    staged, are not committed."""
    data = bytearray(parquet_bytes(hubspot_parquet(4000), row_group_size=1000, compression="zstd"))
    meta = pq.ParquetFile(io.BytesIO(bytes(data))).metadata
    col = meta.row_group(2).column(3)  # email of the third row group
    start = col.dictionary_page_offset or col.data_page_offset
    for i in range(start + 40, start + col.total_compressed_size - 8):
        data[i] = 0xFF
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INTEGRATION_CHUNK_ROWS", "1000")
        report = process(drop("hubspot", "contacts", "damaged.parquet", bytes(data)))
    assert (report.status, report.reason_code) == ("rejected", "unreadable_parquet"), report.as_dict()
    assert "cannot be read past record 2000" in (report.error or "")
    assert table(engine, "contacts") == {}
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(loads.c.status).where(loads.c.load_id == report.load_id)).scalar_one()
            == "rejected"
        )


def test_parquet_in_a_gzip_file_and_in_a_zip(engine: sa.Engine) -> None:
    data = parquet_bytes(hubspot_parquet())
    assert process(drop("hubspot", "contacts", "c.parquet.gz", gzip.compress(data))).rows_inserted == 3
    report = process(
        drop("hubspot", "contacts", "c.zip", zipped({"c.parquet": parquet_bytes(hubspot_parquet(4))}))
    )
    assert (report.status, report.rows_read, report.rows_inserted) == ("succeeded", 4, 1), report.as_dict()


# -- bytes at the edges -----------------------------------------------------------------------------------
def test_a_file_of_only_a_bom_is_rejected_as_empty(engine: sa.Engine) -> None:
    report = process(drop("hubspot", "contacts", "bom.csv", b"\xef\xbb\xbf"))
    assert (report.status, report.reason_code) == ("rejected", "empty_file"), report.as_dict()
    assert "only a byte-order mark" in (report.error or "")


def test_mixed_line_endings_load_every_row(engine: sa.Engine) -> None:
    crlf = contacts_csv(["1", "2"], newline="\r\n")
    lf = b"".join(",".join(contact(str(i))).encode() + b"\n" for i in (3, 4))
    report = process(
        drop(
            "hubspot",
            "contacts",
            "mixed.csv",
            crlf + lf + b"5,Eve,Smith,e@example.com,+1,Lead,New,9,US,2026-01-05 09:30,2026-11-20 10:00\r\n",
        )
    )
    assert (report.status, report.rows_read, report.rows_inserted) == ("succeeded", 5, 5), report.as_dict()
    rows = table(engine, "contacts")
    assert all(not str(v).endswith("\r") for r in rows.values() for v in r.values() if v is not None)
    assert rows["2"]["source_updated_at"] is not None and rows["5"]["country"] == "US"


def test_ingest_file_reads_a_gzip_csv_directly(engine: sa.Engine, tmp_path: Path) -> None:
    """The plain-Python entry point, outside the inbox: a gzip file named .csv is not 'pipe-delimited'."""
    path = tmp_path / "contacts.csv"
    path.write_bytes(gzip.compress(contacts_csv(["1"])))
    report = ingest_file(path, "hubspot", "contacts")
    assert (report.status, report.rows_inserted) == ("succeeded", 1), report.as_dict()


def test_a_header_longer_than_the_first_mib_is_rejected_not_cut(tmp_path: Path) -> None:
    """The header is read from the first MiB: a longer one was cut there (its last name broken, every record
    one field too long); now it is rejected, or counted as too wide when it already has too many columns."""
    path = tmp_path / "contacts.csv"
    names = [f"{'n' * 3000}{i}" for i in range(400)]  # ~1.2 MB of header, 400 columns
    path.write_bytes((",".join(names) + "\n" + ",".join(["x"] * 400) + "\n").encode())
    with pytest.raises(FileRejected) as exc:
        source.inspect(path, max_bytes=0, max_columns=2000)
    assert (exc.value.code, exc.value.message) == ("unreadable_header", "the header row is longer than 1 MiB")
    with pytest.raises(FileRejected) as exc:
        source.inspect(path, max_bytes=0, max_columns=300)
    assert exc.value.code == "too_many_columns" and "at least 3" in exc.value.message


def partner(pid: int, name: str) -> str:
    return (
        f'{{"id": {pid}, "name": "{name}", "email": false, "phone": false, "is_company": true, '
        '"parent_id": false, "write_date": "2026-11-19 12:00:00"}'
    )


@pytest.mark.parametrize("as_list", [False, True], ids=["jsonl", "json"])
def test_a_lone_surrogate_in_json_costs_its_record_not_the_load(engine: sa.Engine, as_list: bool) -> None:
    """JSON may escape a lone UTF-16 surrogate ("\\ud800"): not Unicode, it cannot be stored anywhere, and it
    used to fail the whole load (as if transient) on both warehouses."""
    records = [
        partner(1, "Az\\ud800ure"),
        partner(2, "Deco"),
        partner(3, "Grin \\ud83d\\ude00"),
    ]  # 3: a real pair
    keyed = '{"id": 4, "na\\udfffme": "x", "is_company": true, "write_date": "2026-11-19 12:00:00"}'
    records.append(keyed)
    text = ("[" + ",\n".join(records) + "]") if as_list else "\n".join(records) + "\n"
    name = "p.json" if as_list else "p.jsonl"
    report = process(drop("odoo", "res.partner", name, text.encode()))
    assert (report.status, report.rows_read, report.rows_inserted, report.rows_quarantined) == (
        "succeeded",
        4,
        2,
        2,
    ), report.as_dict()
    found = {d["position"]: (d["check_name"], d["reason"], d["raw_record"]) for d in letters(engine)}
    assert sorted(found) == [1, 4]
    assert found[1][0] == found[4][0] == "json_invalid_unicode"
    assert "lone UTF-16 surrogate \\ud800" in found[1][1] and "\\udfff" in found[4][1]
    assert "\\ud800" in found[1][2]  # the raw record keeps the escape
    stored = table(engine, "customers")
    assert sorted(stored) == ["2", "3"] and stored["3"]["name"] == "Grin 😀"


def test_line_separators_inside_jsonl_values_do_not_split_records(engine: sa.Engine) -> None:
    """U+2028/U+2029/U+0085 may stand unescaped in a JSON string; a JSONL record ends at \\n only."""
    text = "\n".join(
        [partner(1, "Azure\u2028Interior"), partner(2, "Deco\u2029Addict\u0085"), partner(3, "Gemini")]
    )
    report = process(drop("odoo", "res.partner", "p.jsonl", (text + "\r\n").encode()))
    assert (report.status, report.rows_read, report.rows_inserted) == ("succeeded", 3, 3), report.as_dict()
    name = table(engine, "customers")["1"]["name"]
    assert name.startswith("Azure") and name.endswith(
        "Interior"
    )  # one record, whatever the name transform makes of U+2028


def test_a_header_without_a_line_end_is_a_file_without_records(engine: sa.Engine) -> None:
    """pyarrow cannot skip a header that does not end in a newline; that used to fail the load (as if
    transient) instead of rejecting a header-only file."""
    report = process(drop("hubspot", "contacts", "header.csv", ",".join(CONTACT_HEADER).encode()))
    assert (report.status, report.reason_code) == ("rejected", "no_data_rows"), report.as_dict()
    one = process(drop("hubspot", "contacts", "one.csv", contacts_csv(["1"]).rstrip(b"\n")))
    assert (one.status, one.rows_inserted) == ("succeeded", 1), one.as_dict()


def test_a_nul_byte_in_a_new_column_name_is_recorded_not_a_failed_load(engine: sa.Engine) -> None:
    """Postgres text cannot hold NUL: the drift row shows it escaped, as dead letters do."""
    report = process(drop("hubspot", "contacts", "nul.csv", contacts_csv(["1"], extra=["No\x00tes"])))
    assert (report.status, report.rows_inserted) == ("succeeded", 1), report.as_dict()
    with engine.connect() as conn:
        [name] = conn.execute(
            sa.select(schema_drift.c.column_name).where(schema_drift.c.kind == "new_column")
        ).scalars()
    assert name == "No\\u0000tes"


def test_a_full_temporary_folder_fails_the_load_without_rejecting_the_file(
    tmp_path: Path, own_tempdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpacking writes to the temporary folder; when that fails (disk full), the file is not to blame: the
    error is transient (the load is retried), not a rejection of the file as corrupt."""
    path = tmp_path / "contacts.csv.gz"
    path.write_bytes(gzip.compress(contacts_csv(["1"])))

    class Full(io.BufferedWriter):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    real_fdopen = unpack.os.fdopen
    monkeypatch.setattr(unpack.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, "wb", buffering=0)))
    with pytest.raises(unpack.UnpackFailed, match="No space left on device") as exc:
        source.inspect(path, max_bytes=0, max_columns=100)
    assert isinstance(exc.value, TransientError)
    assert no_unpacked_copies(own_tempdir)


def test_unpacked_copies_left_by_a_killed_process_are_swept(tmp_path: Path, own_tempdir: Path) -> None:
    stale = own_tempdir / f"{unpack._UNPACKED_PREFIX}dead.csv"
    stale.write_bytes(b"x")
    old = time.time() - unpack._UNPACKED_STALE_SECONDS - 60
    os.utime(stale, (old, old))
    fresh = own_tempdir / f"{unpack._UNPACKED_PREFIX}live.csv"  # another process's load in progress
    fresh.write_bytes(b"y")
    other = own_tempdir / "someone-else.csv"
    other.write_bytes(b"z")
    os.utime(other, (old, old))
    path = tmp_path / "contacts.csv.gz"
    path.write_bytes(gzip.compress(contacts_csv(["1"])))
    src = source.inspect(path, max_bytes=0, max_columns=100)
    assert sorted(p.name for p in own_tempdir.iterdir()) == sorted([fresh.name, other.name, src.body.name])
