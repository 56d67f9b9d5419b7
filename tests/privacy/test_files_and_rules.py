"""Erasure building blocks: which columns are personal, id forms, every archive format re-written without the
subject's records (and nothing else changed), re-runs, an erasure interrupted between its phases, and a
later quarantined row of an erased contact."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.erasure.erase import CLAIM_TIMEOUT, _claim, erase, finish_pending
from integration_assets.erasure.files import FileRedactor
from integration_assets.erasure.tables import erase_warehouse
from integration_assets.ingest import inbox
from integration_assets.ingest.process import process
from integration_assets.privacy.subjects import Subject, canonical_id, personal_columns, source_fields
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import begin_write, get_engine
from integration_assets.warehouse.schema import dead_letters, privacy_erasures
from tests.privacy.support import (
    CANARY_EMAIL,
    CANARY_FIRST,
    CANARY_ID,
    CANARY_LAST,
    CANARY_PHONE,
    HEADER,
    canary_row,
    csv_row,
    other_row,
    scan,
)

SUBJECT = Subject("hubspot", "contacts", CANARY_ID)


def test_personal_columns_come_from_the_model_and_contracts() -> None:
    assert personal_columns("contacts") == ("email", "first_name", "last_name", "phone")
    fields = source_fields("hubspot", "contacts")
    assert {"Record ID", "id"} <= fields.id_fields
    assert {"Email", "First Name", "properties.email", "properties.phone"} <= fields.personal_fields
    assert fields.personal_properties == {"email", "firstname", "lastname", "phone"}


@pytest.mark.parametrize("raw", [7001, "7001", "07001", " 7001 ", "7001.0", "7001e0"])
def test_one_id_form(raw: object) -> None:
    assert canonical_id(raw) == "7001"


@pytest.mark.parametrize("raw", ["abc", True, -1, "7001.5", "", None, "nan", "inf"])
def test_not_an_id(raw: object) -> None:
    assert canonical_id(raw) is None


def _redactor() -> FileRedactor:
    r = FileRedactor([SUBJECT], source_fields("hubspot", "contacts"))
    r.patterns = []
    return r


API = [
    {
        "id": CANARY_ID,
        "properties": {"email": CANARY_EMAIL, "firstname": CANARY_FIRST, "lastmodifieddate": "x"},
    },
    {"id": "7002", "properties": {"email": "ann.lee@example.com", "lastmodifieddate": "x"}},
]


def _jsonl() -> bytes:
    return "".join(json.dumps(r) + "\n" for r in API).encode() + b"{not json\n"


def _csv(encoding: str = "utf-8", bom: bool = False, crlf: bool = False) -> bytes:
    text = "\n".join([HEADER, canary_row(), other_row()]) + "\n"
    text = text.replace("France", "Français")
    if crlf:
        text = text.replace("\n", "\r\n")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


def _parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(
        pa.table({"id": [CANARY_ID, "7002"], "properties.email": [CANARY_EMAIL, "ann.lee@example.com"]}), buf
    )
    return buf.getvalue()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("contacts.csv", _csv())
        z.writestr("readme.txt", "exported by HubSpot")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.csv", _csv()),
        ("bom-crlf.csv", _csv(bom=True, crlf=True)),
        ("latin.csv", _csv("cp1252")),
        ("a.csv.gz", gzip.compress(_csv())),
        ("gzip-named.csv", gzip.compress(_csv())),
        ("a.jsonl", _jsonl()),
        ("a.jsonl.gz", gzip.compress(_jsonl())),
        ("a.json", json.dumps({"results": API}, indent=2).encode()),
        ("list.json", json.dumps(API).encode()),
        ("a.parquet", _parquet()),
        ("a.zip", _zip()),
    ],
)
def test_every_format_is_rewritten_without_the_subject(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    r = _redactor()
    found = r.collect(path, by_id=True)
    assert CANARY_EMAIL in {v.lower() for v in found}
    result = r.redact(path, "archive", tmp_path, by_id=True, dry_run=False)
    assert result.records == 1 and result.sha256_after and result.sha256_after != result.sha256_before
    out = path.read_bytes()
    text = _text(out, name)
    assert CANARY_EMAIL not in text.lower() and CANARY_FIRST not in text
    assert "ann.lee@example.com" in text, "the other records stay"
    if name.endswith(".csv") and not out.startswith(b"\x1f\x8b"):
        # Same encoding, BOM, line ends and quoting: a loader reads the rest exactly as before.
        assert out.startswith(b"\xef\xbb\xbf") == data.startswith(b"\xef\xbb\xbf")
        assert (b"\r\n" in out) == (b"\r\n" in data)
        enc = "cp1252" if name.startswith("latin") else "utf-8-sig"
        rows = list(csv.reader(io.StringIO(out.decode(enc), newline="")))
        assert [r[0] for r in rows] == ["Record ID", "7002"] and rows[1][8] == "Français"
        assert out.decode(enc).splitlines()[0] == HEADER
    # A second pass finds nothing more: the rewrite is idempotent.
    again = r.redact(path, "archive", tmp_path, by_id=True, dry_run=False)
    assert not again.changed


def _text(data: bytes, name: str) -> str:
    if data[:2] == b"\x1f\x8b":
        return _text(gzip.decompress(data), name)
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "".join(_text(z.read(n), n) for n in z.namelist())
    if name.endswith(".parquet"):
        return json.dumps(pq.read_table(io.BytesIO(data)).to_pylist())
    return data.decode("utf-8", "replace")


def test_a_dry_run_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(_csv())
    result = _redactor().redact(path, "archive", tmp_path, by_id=True, dry_run=True)
    assert result.records == 1 and path.read_bytes() == _csv()


def _load(name: str, text: str) -> list[str]:
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return [process(f).status for f in inbox.scan()]


def test_rerun_and_interrupted_erasure(warehouse_url: str, isolated_env: Path) -> None:
    assert _load("one.csv", "\n".join([HEADER, canary_row(), other_row()]) + "\n") == ["succeeded"]
    engine = get_engine(warehouse_url)
    # The warehouse phase commits, then the process dies before the files: the audit row says so, and the
    # next run completes it.
    with begin_write(engine) as conn:
        e = erase_warehouse(conn, SUBJECT, via="webhook", ref="hubspot:1")
    with engine.connect() as conn:
        assert conn.execute(sa.select(privacy_erasures.c.status)).scalar_one() == "warehouse_done"
    assert scan(warehouse_url, isolated_env), "the archived export still holds the canary"
    # Another process took the file phase: left to it, until its claim is older than the timeout.
    assert _claim(engine, e.id) and not _claim(engine, e.id)
    assert finish_pending(engine) == []
    with begin_write(engine) as conn:
        conn.execute(privacy_erasures.update().values(finished_at=datetime.now(UTC) - CLAIM_TIMEOUT * 2))
    result = CliRunner().invoke(main, ["privacy", "resume", "--json"])
    assert result.exit_code == 0, result.output
    done = [json.loads(line) for line in result.output.splitlines()]
    assert [d["erasure_id"] for d in done] == [e.id] and done[0]["stores"]["archive_records"] == 1
    assert finish_pending(engine) == []
    assert scan(warehouse_url, isolated_env) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(privacy_erasures.c.status)).scalar_one() == "done"
    # Asked again (a second request, or HubSpot and the DPO both): a new audit row, nothing left to erase.
    again = erase("hubspot", "contacts", CANARY_ID)
    assert (
        again.status == "done" and again.stores["archive_records"] == 0 and again.stores["dead_letters"] == 0
    )
    assert again.stores["contacts"] == 0, "nothing personal was left in the row"


def test_a_later_quarantined_row_of_an_erased_contact_keeps_no_payload(
    warehouse_url: str,
    isolated_env: Path,
) -> None:
    result = CliRunner().invoke(main, ["privacy", "erase", "--source", "hubspot", "--id", CANARY_ID])
    assert result.exit_code == 0, result.output
    assert "contacts: erased 0" in result.output  # not loaded yet: remembered all the same
    # The contact arrives later, with a value the contract quarantines.
    assert _load("late.csv", "\n".join([HEADER, canary_row("Astronaut"), other_row()]) + "\n") == [
        "succeeded"
    ]
    with get_engine(warehouse_url).connect() as conn:
        dl = conn.execute(sa.select(dead_letters)).one()
    assert dl.status == "discarded" and dl.natural_key == CANARY_ID and "GDPR erasure" in dl.resolution_note
    assert scan(warehouse_url, isolated_env) == []
    for value in (CANARY_LAST, CANARY_PHONE):
        assert value not in (dl.raw_record or "") + (dl.errors or "") + dl.reason


@pytest.mark.parametrize(
    ("data", "may"),
    [
        (b'"7001",', True),
        (b'"07001",', True),
        (b"7001.0,", True),
        (b'{"id": 7001e0}', True),
        (b'"7001"\n', True),
        (b'"a7001@x.com"', False),
        (b"17001", False),
        (b"70011", False),
        (gzip.compress(b'"7001"'), True),
        (gzip.compress(b"17001"), False),
    ],
)
def test_the_prefilter_finds_every_form_of_the_id(data: bytes, may: bool) -> None:
    """An archived file without the id as a token of its own is not parsed (a large export costs seconds)."""
    assert _redactor().may_hold_ids(data) is may


def test_an_unreachable_broker_erases_nothing_and_says_retry_later(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With RabbitMQ, the broker's dead letters are moved into the warehouse first; when that cannot be done,
    nothing is erased (a half erasure would leave the broker's copies) and the exit code says retry."""
    monkeypatch.setenv("INTEGRATION_QUEUE_URL", "amqp://guest:guest@127.0.0.1:9/%2F?reconnect_max_s=0.5")
    result = CliRunner().invoke(main, ["privacy", "erase", "--source", "hubspot", "--id", CANARY_ID])
    assert result.exit_code == 75, result.output
    assert "nothing was erased" in result.output
    with get_engine(warehouse_url).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(privacy_erasures)).scalar_one() == 0


def test_only_distinctive_values_are_searched_for_outside_the_persons_records() -> None:
    from integration_assets.privacy.subjects import distinctive

    values = {"Ann", "Lee", "ann.lee@example.com", "+44 7700 900461", "Ann Lee", "12", "Mary Ann"}
    assert distinctive(values) == {"ann.lee@example.com", "+44 7700 900461", "Ann Lee", "Mary Ann"}


def test_other_people_keep_a_shared_first_name_and_a_file_without_ids_loses_the_persons_rows(
    tmp_path: Path,
) -> None:
    """The subject is Zephyrina; Zephyrina Smith (7002) is someone else and keeps her name. A rejected file
    without an id column: the row carrying the subject's e-mail goes, the rest stays."""
    archived = tmp_path / "a.csv"
    archived.write_text(
        "\n".join([HEADER, canary_row(), csv_row("7002", CANARY_FIRST, "Smith", "z.smith@example.com", "")])
        + "\n",
        encoding="utf-8",
    )
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text(
        f'"First Name","Email"\n"{CANARY_FIRST}","{CANARY_EMAIL}"\n"Bo","bo@example.com"\n', encoding="utf-8"
    )
    r = FileRedactor([SUBJECT], source_fields("hubspot", "contacts"))
    r.set_values(r.collect(archived, by_id=True))
    assert r.redact(archived, "archive", tmp_path, by_id=True, dry_run=False).records == 1
    assert r.redact(no_ids, "rejected", tmp_path, by_id=False, dry_run=False).records == 1
    kept = archived.read_text(encoding="utf-8")
    assert f'"7002","{CANARY_FIRST}","Smith"' in kept and CANARY_LAST not in kept
    assert no_ids.read_text(encoding="utf-8") == '"First Name","Email"\n"Bo","bo@example.com"\n'


def test_a_value_first_seen_in_a_later_file_is_erased_from_the_earlier_ones(isolated_env: Path) -> None:
    """Files are re-written one by one; the person's old e-mail, known only from an older export read later,
    still goes from a note in a file that was already re-written."""
    from integration_assets.erasure.audit import Erasure
    from integration_assets.erasure.erase import erase_files

    old_email = "zephyrina.old-2019@example.test"
    day = get_settings().archive_dir / "hubspot" / "contacts" / "2024-01-01"
    day.mkdir(parents=True)
    notes = HEADER + ',"Notes"\n' + other_row() + f',"wrote from {old_email}"\n'
    (day / "000000000000__a-notes.csv").write_text(notes, encoding="utf-8")
    old = "\n".join([HEADER, csv_row(CANARY_ID, CANARY_FIRST, CANARY_LAST, old_email, "")]) + "\n"
    (day / "111111111111__b-old.csv").write_text(old, encoding="utf-8")
    e = Erasure(SUBJECT, "cli", None, datetime.now(UTC), id=1)
    e.values = {CANARY_EMAIL}
    erase_files(e)
    assert e.stores["archive_records"] == 1 and e.stores["archive_values"] == 1
    assert old_email not in (day / "000000000000__a-notes.csv").read_text(encoding="utf-8")
    assert "ann.lee@example.com" in (day / "000000000000__a-notes.csv").read_text(encoding="utf-8")
