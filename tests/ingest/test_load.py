"""Load tests of the batch path (read -> contract -> map -> validate -> quarantine -> merge), on SQLite and Postgres.

Every test runs against both warehouses (the ``warehouse_url`` fixture is parametrised) and checks the
accounting identity of every load: rows read = loaded + duplicates suppressed + quarantined, and rows read =
the number of data records in the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from integration_assets.contracts.spec import CONTRACTS_DIR
from integration_assets.ingest.load import ingest_file
from integration_assets.sandbox.batch import generate_batch_samples
from integration_assets.warehouse.db import get_engine
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
DEAL_HEADER = [
    "Record ID",
    "Deal Name",
    "Deal Stage",
    "Amount",
    "Close Date",
    "Create Date",
    "Last Modified Date",
    "Pipeline",
    "Deal owner",
    "Associated Company IDs",
]


# -- helpers ----------------------------------------------------------------------------------------------
@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "inbox"


def contact(
    rid: str,
    *,
    first: str = "Ann",
    email: str | None = None,
    stage: str = "Lead",
    modified: str = "2026-11-20 10:00",
    phone: str = "+1 555 0100",
) -> list[str]:
    return [
        rid,
        first,
        "Smith",
        email if email is not None else f"contact.{rid}@example.com",
        phone,
        stage,
        "New",
        "9000000001",
        "United States",
        "2026-01-05 09:30",
        modified,
    ]


def deal(
    rid: str,
    *,
    stage: str = "Contract Sent",
    amount: str = "1500",
    pipeline: str = "Sales Pipeline",
    modified: str = "2026-11-20 10:00",
) -> list[str]:
    return [
        rid,
        f"Deal {rid}",
        stage,
        amount,
        "2026-12-15 00:00",
        "2026-10-01 08:00",
        modified,
        pipeline,
        "Jane Cooper",
        "9000000001",
    ]


def csv_bytes(header: list[str], rows: list[list[str]], *, delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def put(inbox: Path, system: str, entity: str, name: str, data: bytes | str) -> Path:
    path = inbox / system / entity / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def order(
    oid: int,
    *,
    date: Any = "2026-11-19 10:00:00",
    write: str = "2026-11-19 12:00:00",
    state: str = "sale",
    **over: Any,
) -> dict[str, Any]:
    return {
        "id": oid,
        "name": f"S{oid:05d}",
        "partner_id": [14, "Azure Interior"],
        "date_order": date,
        "amount_untaxed": 100.0,
        "amount_tax": 10.0,
        "amount_total": 110.0,
        "currency_id": [1, "USD"],
        "state": state,
        "invoice_status": "to invoice",
        "client_order_ref": False,
        "write_date": write,
        **over,
    }


def line(lid: int, order_id: int, *, qty: float = 2.0, **over: Any) -> dict[str, Any]:
    return {
        "id": lid,
        "order_id": [order_id, f"S{order_id:05d}"],
        "product_id": [7, "[FURN_0007] Desk"],
        "name": "[FURN_0007] Desk",
        "product_uom_qty": qty,
        "qty_delivered": 0.0,
        "qty_invoiced": 0.0,
        "price_unit": 50.0,
        "discount": 0.0,
        "price_subtotal": 100.0,
        "price_total": 110.0,
        "write_date": "2026-11-19 12:00:00",
        **over,
    }


def invoice(mid: int, *, invoice_date: Any = "2026-11-19", **over: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "name": f"INV/2026/{mid:05d}",
        "move_type": "out_invoice",
        "state": "posted",
        "payment_state": "not_paid",
        "partner_id": [14, "Azure Interior"],
        "invoice_date": invoice_date,
        "invoice_date_due": "2026-12-19",
        "amount_untaxed": 100.0,
        "amount_tax": 10.0,
        "amount_total": 110.0,
        "amount_residual": 110.0,
        "currency_id": [1, "USD"],
        "invoice_origin": "S00001",
        "write_date": "2026-11-19 12:00:00",
        **over,
    }


def load(path: Path, system: str, entity: str, *, records: int | None = None, **kw: Any) -> LoadReport:
    """Ingest one file and check the accounting identity (and rows read against the records written)."""
    report = ingest_file(path, system, entity, **kw)
    assert report.balanced, report.as_dict()
    if records is not None:
        assert report.rows_read == records, report.as_dict()
    return report


def dead(engine: sa.Engine, file_name: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(dead_letters).order_by(dead_letters.c.position, dead_letters.c.id)
    if file_name is not None:
        q = q.where(dead_letters.c.file_name == file_name)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def rows(engine: sa.Engine, table: str) -> dict[str, dict[str, Any]]:
    t = CANONICAL_TABLES[table]
    with engine.connect() as conn:
        return {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(t))}


def drift_of(report: LoadReport) -> set[tuple[str, str]]:
    return {(d["kind"], d["column"]) for d in report.drift}


def counts(report: LoadReport) -> tuple[int, int, int, int, int, int]:
    """(read, inserted, updated, unchanged, duplicates, quarantined)"""
    return (
        report.rows_read,
        report.rows_inserted,
        report.rows_updated,
        report.rows_unchanged,
        report.rows_duplicate,
        report.rows_quarantined,
    )


# -- idempotency ------------------------------------------------------------------------------------------
def test_duplicates_within_a_file(engine: sa.Engine, inbox: Path) -> None:
    path = put(
        inbox,
        "hubspot",
        "contacts",
        "contacts.csv",
        csv_bytes(
            CONTACT_HEADER,
            [
                contact("1"),
                contact("2"),
                contact("3"),
                contact("1"),  # the same record again
                contact("2"),
                contact(
                    "1", first="Anna", modified="2026-11-20 11:00"
                ),  # a newer version of 1 in the same file
                contact(
                    "3", first="Old", modified="2026-11-19 08:00"
                ),  # an older version of 3 after the newer one
            ],
        ),
    )
    report = load(path, "hubspot", "contacts", records=7)
    assert report.status == "succeeded" and report.contract == "hubspot.contacts.csv@v1"
    assert counts(report) == (7, 3, 0, 0, 4, 0)
    stored = rows(engine, "contacts")
    assert stored["1"]["first_name"] == "Anna" and stored["3"]["first_name"] == "Ann"
    assert dead(engine) == []


def test_a_first_load_into_an_empty_table_merges_like_any_other(engine: sa.Engine, inbox: Path) -> None:
    """Into an empty table a load inserts the newest version of each key straight away (Postgres); the
    rows and counts are those of the same file merged into a table that already has other keys."""
    records = [
        contact("1"),
        contact("2", first="Bea"),
        contact("1"),  # an exact copy
        contact("2", first="Bob", modified="2026-11-21 10:00"),  # newer
        contact("3", first="Cy", modified="2026-11-19 10:00"),
        contact("3", first="Cyd", modified="2026-11-19 10:00"),
    ]  # two versions of 3 at the same time: the content hash decides, whatever the table holds
    first = load(
        put(inbox, "hubspot", "contacts", "a.csv", csv_bytes(CONTACT_HEADER, records)),
        "hubspot",
        "contacts",
        records=6,
    )
    assert counts(first) == (6, 3, 0, 0, 3, 0)
    kept = ("first_name", "source_updated_at", "row_hash", "load_id")
    alone = {k: {c: v[c] for c in kept} for k, v in rows(engine, "contacts").items()}
    with engine.begin() as conn:
        conn.execute(CANONICAL_TABLES["contacts"].delete())
    load(
        put(inbox, "hubspot", "contacts", "other.csv", csv_bytes(CONTACT_HEADER, [contact("9")])),
        "hubspot",
        "contacts",
        records=1,
    )
    again = load(
        put(inbox, "hubspot", "contacts", "b.csv", csv_bytes(CONTACT_HEADER, records)),
        "hubspot",
        "contacts",
        records=6,
        force=True,
    )
    assert counts(again) == (6, 3, 0, 0, 3, 0)
    merged = {k: {c: v[c] for c in kept} for k, v in rows(engine, "contacts").items() if k != "9"}
    assert {k: v["first_name"] for k, v in merged.items()} == {
        "1": "Ann",
        "2": "Bob",
        "3": alone["3"]["first_name"],
    }
    assert {k: {**v, "load_id": None} for k, v in merged.items()} == {
        k: {**v, "load_id": None} for k, v in alone.items()
    }
    assert {v["load_id"] for v in merged.values()} == {again.load_id}


def test_same_file_twice_loads_once(engine: sa.Engine, inbox: Path) -> None:
    data = csv_bytes(CONTACT_HEADER, [contact("1"), contact("2"), contact("3", email="bad")])
    first = load(put(inbox, "hubspot", "contacts", "a.csv", data), "hubspot", "contacts", records=3)
    assert counts(first) == (3, 2, 0, 0, 0, 1)
    again = load(put(inbox, "hubspot", "contacts", "a.csv", data), "hubspot", "contacts")
    renamed = load(put(inbox, "hubspot", "contacts", "a-copy (2).csv", data), "hubspot", "contacts")
    for r in (again, renamed):
        assert r.status == "duplicate_file" and first.load_id in (r.error or "")
        assert counts(r) == (0, 0, 0, 0, 0, 0)
    # Forced: read and merged again, nothing changes; the bad record's dead letter counts a second attempt.
    forced = load(
        put(inbox, "hubspot", "contacts", "a.csv", data), "hubspot", "contacts", force=True, records=3
    )
    assert forced.status == "succeeded"
    assert counts(forced) == (3, 0, 0, 2, 0, 1)
    [letter] = dead(engine)
    assert (letter["attempts"], letter["status"], letter["load_id"]) == (2, "pending", forced.load_id)
    with engine.connect() as conn:
        ledger = {r.load_id: r for r in conn.execute(sa.select(loads))}
    assert {ledger[r.load_id].status for r in (first, again, renamed, forced)} == {
        "succeeded",
        "duplicate_file",
    }
    assert (ledger[first.load_id].rows_read, ledger[first.load_id].rows_quarantined) == (3, 1)
    assert ledger[first.load_id].content_hash == ledger[forced.load_id].content_hash


def test_an_older_update_arriving_later_is_not_applied(engine: sa.Engine, inbox: Path) -> None:
    newer = put(
        inbox,
        "hubspot",
        "contacts",
        "newer.csv",
        csv_bytes(
            CONTACT_HEADER, [contact("1", phone="+1 555 0199", modified="2026-11-20 10:00"), contact("2")]
        ),
    )
    older = put(
        inbox,
        "hubspot",
        "contacts",
        "older.csv",
        csv_bytes(
            CONTACT_HEADER,
            [
                contact("1", phone="+1 555 0100", modified="2026-11-19 10:00"),
                contact("2", modified="2026-11-20 10:00"),
            ],
        ),
    )
    load(newer, "hubspot", "contacts")
    report = load(older, "hubspot", "contacts", records=2)
    assert counts(report) == (2, 0, 0, 2, 0, 0)
    stored = rows(engine, "contacts")["1"]
    assert stored["phone"] == "+1 555 0199"
    assert stored["source_updated_at"].replace(tzinfo=None).isoformat() == "2026-11-20T10:00:00"


def test_concurrent_loads_of_one_table_both_land(engine: sa.Engine, inbox: Path) -> None:
    """Two overlapping files loaded at the same moment (two sensor runs, or a run and a replay): neither
    fails on a key the other inserts, and the newest version of each shared key wins."""
    ids = [str(i) for i in range(1, 401)]
    a = put(
        inbox,
        "hubspot",
        "contacts",
        "a.csv",
        csv_bytes(CONTACT_HEADER, [contact(i, first="A", modified="2026-11-20 10:00") for i in ids[:300]]),
    )
    b = put(
        inbox,
        "hubspot",
        "contacts",
        "b.csv",
        csv_bytes(CONTACT_HEADER, [contact(i, first="B", modified="2026-11-21 10:00") for i in ids[100:]]),
    )
    barrier = threading.Barrier(2)

    def run(path: Path) -> LoadReport:
        barrier.wait()
        return load(path, "hubspot", "contacts", records=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(run, [a, b]))
    assert [r.status for r in reports] == ["succeeded", "succeeded"]
    assert sum(r.rows_inserted for r in reports) == 400
    stored = rows(engine, "contacts")
    assert len(stored) == 400
    assert {stored[i]["first_name"] for i in ids[:100]} == {"A"}
    assert {stored[i]["first_name"] for i in ids[100:]} == {"B"}


@pytest.mark.postgres
def test_a_merge_in_progress_holds_up_other_merges_of_the_table_but_not_row_updates(
    pg_database: str, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge lock serialises merges of one table (a plain INSERT of new keys needs that), while an UPDATE
    of other rows of the table (a HubSpot property change) goes on: no table lock."""
    from integration_assets.warehouse.writer import CanonicalStage
    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", pg_database)
    engine = get_engine(pg_database)
    load(
        put(
            inbox, "hubspot", "contacts", "seed.csv", csv_bytes(CONTACT_HEADER, [contact("1"), contact("2")])
        ),
        "hubspot",
        "contacts",
    )
    with engine.connect() as holder:
        tx = holder.begin()
        first = CanonicalStage(holder, "contacts")
        first.add(_contact_frame("3"), "ld_holder")
        first.merge()  # lock held until this transaction ends
        with engine.connect() as other:
            other.exec_driver_sql("SET lock_timeout = '1s'")  # for the session
            other.commit()
            with other.begin():
                other.execute(sa.text("UPDATE contacts SET first_name = 'Changed' WHERE source_id = '1'"))
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"), other.begin():
                second = CanonicalStage(other, "contacts")
                second.add(_contact_frame("4"), "ld_other")
                second.merge()
        tx.commit()
    stored = rows(engine, "contacts")
    assert sorted(stored) == ["1", "2", "3"] and stored["1"]["first_name"] == "Changed"


def _contact_frame(rid: str) -> Any:
    import pandas as pd

    ts = pd.Timestamp("2026-11-20 10:00", tz="UTC")
    return pd.DataFrame(
        {
            "source_system": ["hubspot"],
            "source_id": [rid],
            "source_updated_at": [ts],
            "mapping_version": ["test"],
            "email": [f"c{rid}@example.com"],
            "first_name": ["Ann"],
            "last_name": ["Smith"],
            "phone": [None],
            "lifecycle_stage": ["lead"],
            "lead_status": [None],
            "company_id": [None],
            "country": [None],
            "created_at": [ts],
            "archived_at": [None],
            "erased_at": [None],
            "_pos": [1],
        }
    )


def test_staged_lineage_keeps_each_rows_own_values(engine: sa.Engine) -> None:
    """A lineage value shared by a whole chunk is staged once (the staging column's default on Postgres):
    chunks with different values, and a chunk that mixes them, still land with each row's own value."""
    import pandas as pd

    from integration_assets.warehouse.writer import CanonicalStage

    chunks = [pd.concat([_contact_frame(str(i)) for i in ids]) for ids in ((1, 2), (3, 4), (5, 6))]
    chunks[1]["mapping_version"] = "v2"
    chunks[2]["mapping_version"] = ["v1", "v3"]
    chunks[2]["source_system"] = ["hubspot", "odoo"]
    with engine.begin() as conn:
        stage = CanonicalStage(conn, "contacts")
        for n, chunk in enumerate(chunks):
            stage.add(chunk.reset_index(drop=True), f"ld_{n}")
        assert stage.merge().inserted == 6
    with engine.connect() as conn:
        got = {
            (r.source_system, r.source_id): (r.mapping_version, r.load_id)
            for r in conn.execute(sa.select(CANONICAL_TABLES["contacts"]))
        }
    assert got == {
        ("hubspot", "1"): ("test", "ld_0"),
        ("hubspot", "2"): ("test", "ld_0"),
        ("hubspot", "3"): ("v2", "ld_1"),
        ("hubspot", "4"): ("v2", "ld_1"),
        ("hubspot", "5"): ("v1", "ld_2"),
        ("odoo", "6"): ("v3", "ld_2"),
    }


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_a_missing_lineage_value_is_not_staged_as_the_default(engine: sa.Engine, missing: Any) -> None:
    """A chunk whose mapping_version is missing on one row is refused by the table (NOT NULL), not given
    the other rows' value."""
    import pandas as pd

    from integration_assets.warehouse.writer import CanonicalStage

    chunk = pd.concat([_contact_frame("1"), _contact_frame("2")]).reset_index(drop=True)
    chunk["mapping_version"] = ["v1", missing]
    # Through SQLAlchemy on SQLite, from the COPY stream on Postgres.
    with pytest.raises((sa.exc.IntegrityError, psycopg.errors.NotNullViolation)), engine.begin() as conn:
        stage = CanonicalStage(conn, "contacts")
        stage.add(chunk, "ld_0")
        stage.merge()


@pytest.mark.postgres
def test_a_large_merge_refreshes_the_planner_statistics(pg_database: str) -> None:
    """A table the planner believes empty gets a nested-loop probe per staged row in the next merge: a merge
    that grows a table by more than a tenth (and 10,000 rows) analyses it; a small one does not."""
    import pandas as pd

    from integration_assets.warehouse.writer import ANALYZE_MIN_ROWS, CanonicalStage
    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    engine = get_engine(pg_database)

    def merge(ids: range) -> None:
        frame = pd.concat([_contact_frame("0")] * len(ids), ignore_index=True)
        frame["source_id"] = [str(i) for i in ids]
        frame["_pos"] = range(1, len(ids) + 1)
        with engine.begin() as conn:
            stage = CanonicalStage(conn, "contacts")
            stage.add(frame, "ld_stats")
            stage.merge()

    def estimate() -> float:
        with engine.connect() as conn:
            return float(
                conn.exec_driver_sql(
                    "SELECT reltuples FROM pg_class WHERE oid = 'contacts'::regclass"
                ).scalar_one()
            )

    with engine.begin() as conn:  # truncation leaves no statistics behind
        conn.exec_driver_sql("ANALYZE contacts")
    assert estimate() <= 0
    merge(range(ANALYZE_MIN_ROWS + 2_000))
    assert estimate() == ANALYZE_MIN_ROWS + 2_000
    merge(range(100_000, 100_500))  # +4%: left to autovacuum
    assert estimate() == ANALYZE_MIN_ROWS + 2_000


def test_api_records_and_exports_merge_into_one_table(engine: sa.Engine, inbox: Path) -> None:
    """A contact from the UI export is updated by a later v3 API record (ms precision) of the same id."""
    load(
        put(inbox, "hubspot", "contacts", "export.csv", csv_bytes(CONTACT_HEADER, [contact("512")])),
        "hubspot",
        "contacts",
    )
    record = {
        "id": "512",
        "properties": {
            "email": "BCooper@Biglytics.net",
            "firstname": "Bryan",
            "lastname": "Cooper",
            "lifecyclestage": "customer",
            "hs_lead_status": "CONNECTED",
            "phone": None,
            "createdate": "2019-10-30T03:30:17.883Z",
            "lastmodifieddate": "2026-11-21T16:50:06.678Z",
            "hs_object_id": "512",
        },
        "createdAt": "2019-10-30T03:30:17.883Z",
        "updatedAt": "2026-11-21T16:50:06.678Z",
        "archived": False,
        "associations": {"companies": {"results": [{"id": "5790939450", "type": "contact_to_company"}]}},
    }
    report = load(
        put(inbox, "hubspot", "contacts", "api.json", json.dumps({"results": [record]})),
        "hubspot",
        "contacts",
        records=1,
    )
    assert report.contract == "hubspot.contacts.api@v1" and counts(report) == (1, 0, 1, 0, 0, 0)
    assert drift_of(report) == {("missing_column", "properties.country")}
    stored = rows(engine, "contacts")["512"]
    assert (
        stored["email"],
        stored["lifecycle_stage"],
        stored["lead_status"],
        stored["company_id"],
        stored["phone"],
    ) == ("bcooper@biglytics.net", "customer", "connected", "5790939450", None)
    assert stored["mapping_version"] == "hubspot.contacts.api@v1"


def test_api_records_listed_with_archived_true_mark_the_row_deleted(engine: sa.Engine, inbox: Path) -> None:
    """GET …?archived=true returns deleted records with archivedAt: the row is kept and marked, as new as its
    deletion (which is later than its last property change), so an older live copy cannot undo it."""
    load(
        put(
            inbox,
            "hubspot",
            "contacts",
            "export.csv",
            csv_bytes(CONTACT_HEADER, [contact("512"), contact("513")]),
        ),
        "hubspot",
        "contacts",
    )
    gone = _api_contact("512", "Bryan", "2026-11-21T16:50:06.678Z") | {
        "archived": True,
        "archivedAt": "2026-11-25T08:00:00.000Z",
    }
    report = load(
        put(inbox, "hubspot", "contacts", "archived.jsonl", json.dumps(gone) + "\n"),
        "hubspot",
        "contacts",
        records=1,
    )
    assert counts(report)[:3] == (1, 0, 1) and ("missing_column", "archivedAt") not in drift_of(report)
    stored = rows(engine, "contacts")
    assert str(pd.Timestamp(stored["512"]["archived_at"]).tz_localize(None)) == "2026-11-25 08:00:00"
    assert str(pd.Timestamp(stored["512"]["source_updated_at"]).tz_localize(None)) == "2026-11-25 08:00:00"
    assert stored["513"]["archived_at"] is None
    live = _api_contact("512", "Bryan", "2026-11-24T10:00:00.000Z")  # changed before the deletion
    report = load(
        put(inbox, "hubspot", "contacts", "late.jsonl", json.dumps(live) + "\n"),
        "hubspot",
        "contacts",
        records=1,
    )
    assert counts(report)[:4] == (1, 0, 0, 1)  # unchanged: the deletion is newer
    assert rows(engine, "contacts")["512"]["archived_at"] is not None


def _api_contact(rid: str, first: str, modified: str) -> dict[str, Any]:
    return {
        "id": rid,
        "properties": {
            "email": f"c{rid}@example.com",
            "firstname": first,
            "lastname": "Doe",
            "lifecyclestage": "lead",
            "hs_object_id": rid,
            "lastmodifieddate": modified,
            "createdate": "2026-01-01T00:00:00.000Z",
        },
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": modified,
        "archived": False,
    }


@pytest.mark.parametrize("chunk_rows", [2, 1000])
def test_versions_spread_over_chunks_merge_like_one_chunk(
    engine: sa.Engine, inbox: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    """A file read in many chunks: a key new in one chunk and newer in a later one, a pre-existing key updated
    in two chunks, a stale version after a newer one and exact copies in other chunks give the counts and
    the rows of a file read in one chunk."""
    t1, t2, t3 = "2026-11-20T10:00:00.000Z", "2026-11-21T10:00:00.000Z", "2026-11-22T10:00:00.000Z"
    before = [_api_contact("1", "Old1", t1), _api_contact("2", "Old2", t1), _api_contact("3", "Same3", t1)]
    load(put(inbox, "hubspot", "contacts", "before.jsonl", jsonl(before)), "hubspot", "contacts", records=3)
    monkeypatch.setenv("INTEGRATION_CHUNK_ROWS", str(chunk_rows))
    records = [
        _api_contact("10", "New10a", t1),  # chunk 1: a new key ...
        _api_contact("1", "Upd1a", t2),  # ... and a pre-existing key, updated
        _api_contact("10", "New10b", t2),  # chunk 2: the new key again, newer
        _api_contact("3", "Same3", t1),  # an unchanged pre-existing key
        _api_contact("1", "Upd1b", t3),  # chunk 3: the pre-existing key updated again
        _api_contact("2", "Stale2", "2026-11-19T10:00:00.000Z"),  # older than the stored version
        _api_contact("10", "New10b", t2),  # chunk 4: an exact copy of an earlier record
        _api_contact("11", "New11", t1),
    ]
    report = load(
        put(inbox, "hubspot", "contacts", "mixed.jsonl", jsonl(records)), "hubspot", "contacts", records=8
    )
    # read, inserted (10, 11), updated (1), unchanged (2, 3), duplicates (3 extra copies of 10 and 1), quarantined
    assert counts(report) == (8, 2, 1, 2, 3, 0)
    stored = rows(engine, "contacts")
    assert {k: v["first_name"] for k, v in stored.items()} == {
        "1": "Upd1b",
        "2": "Old2",
        "3": "Same3",
        "10": "New10b",
        "11": "New11",
    }
    again = load(
        put(inbox, "hubspot", "contacts", "mixed-again.jsonl", jsonl(records)),
        "hubspot",
        "contacts",
        force=True,
    )
    assert counts(again) == (8, 0, 0, 5, 3, 0)


# -- drift ------------------------------------------------------------------------------------------------
def test_new_column_loads_and_is_reported(engine: sa.Engine, inbox: Path) -> None:
    header = [*CONTACT_HEADER, "Preferred language"]
    path = put(inbox, "hubspot", "contacts", "c.csv", csv_bytes(header, [[*contact("1"), "French"]]))
    report = load(path, "hubspot", "contacts", records=1)
    assert report.status == "succeeded" and counts(report) == (1, 1, 0, 0, 0, 0)
    assert drift_of(report) == {("new_column", "Preferred language")}
    with engine.connect() as conn:
        [found] = conn.execute(sa.select(schema_drift)).all()
    assert (found.load_id, found.kind, found.column_name, found.contract_version) == (
        report.load_id,
        "new_column",
        "Preferred language",
        "hubspot.contacts.csv@v1",
    )


def test_missing_required_column_rejects_the_file(engine: sa.Engine, inbox: Path) -> None:
    header = [h for h in CONTACT_HEADER if h != "Last Modified Date"]
    path = put(inbox, "hubspot", "contacts", "c.csv", csv_bytes(header, [contact("1")[:-1]]))
    report = load(path, "hubspot", "contacts")
    assert (report.status, report.reason_code) == ("rejected", "missing_required_columns")
    assert "Last Modified Date" in (report.error or "")
    assert counts(report) == (0, 0, 0, 0, 0, 0)
    assert rows(engine, "contacts") == {}


def test_changed_date_format_quarantines_the_rows(engine: sa.Engine, inbox: Path) -> None:
    path = put(
        inbox,
        "hubspot",
        "contacts",
        "c.csv",
        csv_bytes(
            CONTACT_HEADER,
            [
                contact("1"),
                contact("2", modified="11/20/2026 10:00 AM"),
                contact("3", modified="20.11.2026 10:00"),
            ],
        ),
    )
    report = load(path, "hubspot", "contacts", records=3)
    assert counts(report) == (3, 1, 0, 0, 0, 2)
    letters = dead(engine, "c.csv")
    assert [
        (d["position"], d["natural_key"], d["stage"], d["check_name"], d["column_name"], d["offending_value"])
        for d in letters
    ] == [
        (2, "2", "map", "date_format", "Last Modified Date", "11/20/2026 10:00 AM"),
        (3, "3", "map", "date_format", "Last Modified Date", "20.11.2026 10:00"),
    ]
    assert "does not match ['%Y-%m-%d %H:%M']" in letters[0]["reason"]
    assert json.loads(letters[0]["raw_record"])["Record ID"] == "2"
    with engine.connect() as conn:
        [found] = conn.execute(sa.select(schema_drift).where(schema_drift.c.kind == "format_change")).all()
    assert (found.column_name, found.rows_affected) == ("Last Modified Date", 2)
    assert json.loads(found.sample) == ["11/20/2026 10:00 AM", "20.11.2026 10:00"]


def test_unknown_dropdown_value_is_quarantined_until_the_contract_knows_it(
    engine: sa.Engine, inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = csv_bytes(CONTACT_HEADER, [contact("1"), contact("2", stage="MQL"), contact("3", stage="MQL")])
    path = put(inbox, "hubspot", "contacts", "c.csv", data)
    report = load(path, "hubspot", "contacts", records=3)
    assert counts(report) == (3, 1, 0, 0, 0, 2)
    assert ("unknown_value", "Lifecycle Stage") in drift_of(report)
    assert {(d["check_name"], d["column_name"], d["offending_value"]) for d in dead(engine)} == {
        ("unknown_value", "Lifecycle Stage", "MQL")
    }
    assert "'Lifecycle Stage' has a value the contract does not know: 'MQL'" in dead(engine)[0]["reason"]

    # The fix is a contract edit: a copy of the contracts with a v2 that knows the renamed label.
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    v1 = (root / "hubspot" / "contacts_export.v1.yaml").read_text(encoding="utf-8")
    v2 = v1.replace("version: 1", "version: 2").replace(
        "      Marketing Qualified Lead: marketingqualifiedlead\n",
        "      Marketing Qualified Lead: marketingqualifiedlead\n      MQL: marketingqualifiedlead\n",
    )
    assert v2.count("MQL: marketingqualifiedlead") == 1
    (root / "hubspot" / "contacts_export.v2.yaml").write_text(v2, encoding="utf-8")
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))

    again = load(path, "hubspot", "contacts", force=True, records=3)
    assert again.contract == "hubspot.contacts.csv@v2"
    assert counts(again) == (3, 2, 0, 1, 0, 0)
    stored = rows(engine, "contacts")
    assert {k: (v["lifecycle_stage"], v["mapping_version"]) for k, v in stored.items()} == {
        "1": ("lead", "hubspot.contacts.csv@v1"),
        "2": ("marketingqualifiedlead", "hubspot.contacts.csv@v2"),
        "3": ("marketingqualifiedlead", "hubspot.contacts.csv@v2"),
    }


def test_deals_contract_v2_absorbs_renamed_labels(engine: sa.Engine, inbox: Path) -> None:
    header = [*DEAL_HEADER, "Deal Type"]
    data = csv_bytes(
        header,
        [
            [*deal("11", stage="Discovery Call Booked", pipeline="New Business"), "New Business"],
            [*deal("12", stage="Closed Won", pipeline="New Business"), "Existing Business"],
        ],
    )
    report = load(put(inbox, "hubspot", "deals", "deals.csv", data), "hubspot", "deals", records=2)
    assert report.contract == "hubspot.deals.csv@v2"
    assert counts(report) == (2, 2, 0, 0, 0, 0) and report.drift == []
    stored = rows(engine, "deals")
    assert (stored["11"]["stage"], stored["11"]["pipeline"], stored["11"]["is_closed_won"]) == (
        "appointmentscheduled",
        "default",
        False,
    )
    assert (stored["12"]["stage"], stored["12"]["is_closed_won"], float(stored["12"]["amount"])) == (
        "closedwon",
        True,
        1500.0,
    )
    # Under v1 the same file is drift: renamed labels quarantined, the new column reported.
    pinned = load(
        put(inbox, "hubspot", "deals", "deals.csv", data),
        "hubspot",
        "deals",
        force=True,
        contract_id="hubspot.deals.csv@v1",
        records=2,
    )
    assert counts(pinned) == (2, 0, 0, 0, 0, 2)
    assert drift_of(pinned) == {
        ("new_column", "Deal Type"),
        ("unknown_value", "Deal Stage"),
        ("unknown_value", "Pipeline"),
    }


# -- files that cannot be loaded at all -------------------------------------------------------------------
CONTACTS_CSV = csv_bytes(CONTACT_HEADER, [contact("1")])


@pytest.mark.parametrize(
    ("name", "data", "entity", "code", "message"),
    [
        pytest.param("empty.csv", b"", "contacts", "empty_file", "empty", id="empty-file"),
        pytest.param(
            "header.csv",
            csv_bytes(CONTACT_HEADER, []),
            "contacts",
            "no_data_rows",
            "no data records",
            id="header-only",
        ),
        pytest.param(
            "semicolons.csv",
            csv_bytes(CONTACT_HEADER, [contact("1")], delimiter=";"),
            "contacts",
            "wrong_delimiter",
            "';'-delimited",
            id="wrong-delimiter",
        ),
        pytest.param(
            "dupe-header.csv",
            csv_bytes([*CONTACT_HEADER, "Email"], [[*contact("1"), "x@y.com"]]),
            "contacts",
            "duplicate_header",
            "duplicate column name 'Email'",
            id="duplicate-header",
        ),
        pytest.param(
            "contacts.csv",
            CONTACTS_CSV,
            "companies",
            "missing_required_columns",
            "wrong folder (expected hubspot/contacts)",
            id="wrong-folder",
        ),
        pytest.param(
            "export.xlsx",
            b"PK\x03\x04",
            "contacts",
            "unsupported_format",
            "unsupported file type",
            id="unsupported-type",
        ),
    ],
)
def test_files_rejected_as_a_whole(
    engine: sa.Engine, inbox: Path, name: str, data: bytes, entity: str, code: str, message: str
) -> None:
    report = load(put(inbox, "hubspot", entity, name, data), "hubspot", entity)
    assert (report.status, report.reason_code) == ("rejected", code), report.as_dict()
    assert message in (report.error or "")
    assert counts(report) == (0, 0, 0, 0, 0, 0)
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(loads.c.status, loads.c.error).where(loads.c.load_id == report.load_id)
        ).one()
    assert status.status == "rejected" and status.error.startswith(f"{code}: ")
    assert rows(engine, "contacts") == {} and rows(engine, "companies") == {}


def test_truncated_json_file_is_rejected(engine: sa.Engine, inbox: Path) -> None:
    text = json.dumps([order(1), order(2)])
    report = load(
        put(inbox, "odoo", "sale.order", "orders.json", text[: len(text) - 30]), "odoo", "sale.order"
    )
    assert (report.status, report.reason_code) == ("rejected", "invalid_json")
    assert "invalid or truncated JSON" in (report.error or "")


def test_file_over_the_size_limit_is_rejected_unread(
    engine: sa.Engine, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_MAX_FILE_BYTES", "100")
    path = put(
        inbox,
        "hubspot",
        "contacts",
        "big.csv",
        csv_bytes(CONTACT_HEADER, [contact(str(i)) for i in range(5)]),
    )
    report = load(path, "hubspot", "contacts")
    assert (report.status, report.reason_code) == ("rejected", "file_too_large")
    assert f"{path.stat().st_size} bytes, over the configured limit of 100" in (report.error or "")


# -- bad records: quarantined one by one, the rest loads ---------------------------------------------------
def test_unbalanced_quotes(engine: sa.Engine, inbox: Path) -> None:
    good = csv_bytes(CONTACT_HEADER, [contact("1")]).decode()
    text = good + '2,"Bob,Smith,bob@example.com,+1,Lead,New,9000000001,US,2026-01-05 09:30,2026-11-20 10:00\n'
    text += "".join(",".join(contact(str(i))) + "\n" for i in (3, 4))
    report = load(put(inbox, "hubspot", "contacts", "quotes.csv", text), "hubspot", "contacts", records=4)
    assert counts(report) == (4, 3, 0, 0, 0, 1)
    [letter] = dead(engine)
    assert (letter["position"], letter["stage"], letter["check_name"], letter["natural_key"]) == (
        2,
        "parse",
        "csv_unbalanced_quote",
        None,
    )
    assert letter["raw_record"].startswith('2,"Bob,Smith') and "\n" not in letter["raw_record"]
    assert "never closed" in letter["reason"]
    assert sorted(rows(engine, "contacts")) == ["1", "3", "4"]


def test_stray_delimiter_costs_one_row(engine: sa.Engine, inbox: Path) -> None:
    text = csv_bytes(CONTACT_HEADER, [contact("1")]).decode() + ",".join([*contact("2"), "extra"]) + "\n"
    text += ",".join(contact("3")) + "\n"
    report = load(put(inbox, "hubspot", "contacts", "c.csv", text), "hubspot", "contacts", records=3)
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    [letter] = dead(engine)
    assert (letter["position"], letter["check_name"]) == (2, "csv_field_count")
    assert "expected 11 fields, found 12" in letter["reason"]


def test_truncated_jsonl_costs_its_last_line(engine: sa.Engine, inbox: Path) -> None:
    text = jsonl([order(1), order(2), order(3)])
    report = load(
        put(inbox, "odoo", "sale.order", "orders.jsonl", text[:-40]), "odoo", "sale.order", records=3
    )
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    [letter] = dead(engine)
    assert (letter["position"], letter["stage"], letter["check_name"]) == (3, "parse", "json_invalid")
    assert letter["raw_record"].startswith('{"id": 3')
    assert sorted(rows(engine, "sales_orders")) == ["1", "2"]


def test_a_10_mb_field(engine: sa.Engine, inbox: Path) -> None:
    huge = "x" * (10 << 20)
    # In a CSV export: a name far beyond the column's length.
    csv_path = put(
        inbox,
        "hubspot",
        "contacts",
        "big.csv",
        csv_bytes(CONTACT_HEADER, [contact("1"), contact("2", first=huge), contact("3")]),
    )
    assert csv_path.stat().st_size > 10 << 20
    report = load(csv_path, "hubspot", "contacts", records=3)
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    [letter] = dead(engine, "big.csv")
    assert (letter["natural_key"], letter["check_name"], letter["column_name"]) == (
        "2",
        "max_length",
        "First Name",
    )
    assert "value_too_large" in {e["check"] for e in json.loads(letter["errors"])}
    assert len(letter["offending_value"]) <= 500  # a dead letter shows a prefix, not 10 MB
    # In an Odoo record: a free-text description over the 1 MiB field limit.
    load(put(inbox, "odoo", "sale.order", "o.jsonl", jsonl([order(1)])), "odoo", "sale.order")
    path = put(
        inbox,
        "odoo",
        "sale.order.line",
        "lines.jsonl",
        jsonl([line(1, 1), line(2, 1, name=huge), line(3, 1)]),
    )
    report = load(path, "odoo", "sale.order.line", records=3)
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    [letter] = dead(engine, "lines.jsonl")
    assert (letter["natural_key"], letter["check_name"], letter["column_name"]) == (
        "2",
        "value_too_large",
        "name",
    )
    assert "1048576-byte field limit" in letter["reason"]


def test_nul_bytes_in_values(engine: sa.Engine, inbox: Path) -> None:
    """Postgres cannot store NUL in text: the row is quarantined and its dead letter shows it as \\u0000."""
    data = csv_bytes(CONTACT_HEADER, [contact("1"), contact("2", first="Bo\x00b"), contact("3")])
    report = load(put(inbox, "hubspot", "contacts", "nul.csv", data), "hubspot", "contacts", records=3)
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    [letter] = dead(engine, "nul.csv")
    assert (letter["check_name"], letter["column_name"], letter["offending_value"]) == (
        "nul_byte",
        "First Name",
        "Bo\\u0000b",
    )
    assert json.loads(letter["raw_record"])["First Name"] == "Bo\x00b"
    # JSON's escaped \u0000 (which Postgres also refuses in jsonb) in an Odoo record.
    text = (
        '{"id": 1, "name": "Az\\u0000ure", "email": false, "phone": false, "is_company": true, '
        '"parent_id": false, "write_date": "2026-11-19 12:00:00"}\n'
        '{"id": 2, "name": "Deco", "email": false, "phone": false, "is_company": true, '
        '"parent_id": false, "write_date": "2026-11-19 12:00:00"}\n'
    )
    report = load(put(inbox, "odoo", "res.partner", "p.jsonl", text), "odoo", "res.partner", records=2)
    assert counts(report) == (2, 1, 0, 0, 0, 1)
    [letter] = dead(engine, "p.jsonl")
    assert (letter["natural_key"], letter["check_name"], letter["column_name"]) == ("1", "nul_byte", "name")
    assert sorted(rows(engine, "customers")) == ["2"]


def test_latin1_bytes_in_a_utf8_file(engine: sa.Engine, inbox: Path) -> None:
    data = csv_bytes(CONTACT_HEADER, [contact("1", first="Zoë"), contact("2", first="René"), contact("3")])
    data = data.replace("René".encode(), b"Ren\xe9")  # one value typed in a latin-1 tool
    report = load(put(inbox, "hubspot", "contacts", "mixed.csv", data), "hubspot", "contacts", records=3)
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    [letter] = dead(engine)
    assert (letter["stage"], letter["check_name"], letter["column_name"], letter["offending_value"]) == (
        "parse",
        "invalid_encoding",
        "First Name",
        "René",
    )
    assert json.loads(letter["raw_record"])["First Name"] == "René"
    assert rows(engine, "contacts")["1"]["first_name"] == "Zoë"


def test_a_whole_file_in_the_fallback_encoding_loads(engine: sa.Engine, inbox: Path) -> None:
    data = (
        csv_bytes(CONTACT_HEADER, [contact("1", first="René"), contact("2", first="Zoë")])
        .decode()
        .encode("cp1252")
    )
    report = load(put(inbox, "hubspot", "contacts", "cp1252.csv", data), "hubspot", "contacts", records=2)
    assert counts(report) == (2, 2, 0, 0, 0, 0)
    assert {k: v["first_name"] for k, v in rows(engine, "contacts").items()} == {"1": "René", "2": "Zoë"}


def _past_the_first_mib(rows_after: list[list[str]]) -> tuple[bytes, int]:
    """A contacts export whose first MiB is plain ASCII, then ``rows_after``; (bytes, records)."""
    filler = [contact(str(1000 + i)) for i in range(12_000)]  # ~1.3 MiB
    data = csv_bytes(CONTACT_HEADER, [*filler, *rows_after])
    assert data.index(b"\n", 1 << 20) < len(data) - 200
    return data, len(filler) + len(rows_after)


def test_stray_bytes_past_the_first_mib_are_found_by_the_reader(engine: sa.Engine, inbox: Path) -> None:
    """A CSV is read as UTF-8 when its first MiB is (the whole-file check is skipped); a latin-1 value
    further on makes the reader start again on a checked file: the row is quarantined as it would be anyway,
    nothing else changes and nothing is counted twice."""
    data, n = _past_the_first_mib([contact("1", first="René"), contact("2", first="Zoë")])
    data = data.replace("René".encode(), b"Ren\xe9")
    report = load(
        put(inbox, "hubspot", "contacts", "late-latin1.csv", data), "hubspot", "contacts", records=n
    )
    assert counts(report) == (n, n - 1, 0, 0, 0, 1)
    [letter] = dead(engine)
    assert (letter["check_name"], letter["offending_value"]) == ("invalid_encoding", "René")
    assert rows(engine, "contacts")["2"]["first_name"] == "Zoë"


# pyarrow reports the bytes it could not decode for the row handler as an unraisable exception (stderr).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_broken_record_with_stray_bytes_past_the_first_mib(engine: sa.Engine, inbox: Path) -> None:
    """A record with a stray delimiter and a latin-1 byte after the first MiB: pyarrow cannot hand its bytes
    to the row handler, so the file is read again on a checked file and only that record is quarantined."""
    broken = contact("2", first="René")
    broken[1] = "René, Jr"  # an unquoted comma: one field too many
    data, n = _past_the_first_mib([contact("1"), broken, contact("3")])
    data = data.replace("René, Jr".encode(), b"Ren\xe9, Jr")
    data = data.replace(b'"Ren\xe9, Jr"', b"Ren\xe9, Jr")  # csv.writer quoted it
    report = load(
        put(inbox, "hubspot", "contacts", "late-broken.csv", data), "hubspot", "contacts", records=n
    )
    assert report.status == "succeeded", report.as_dict()
    assert counts(report) == (n, n - 1, 0, 0, 0, 1)
    [letter] = dead(engine)
    assert letter["check_name"] == "csv_field_count"


def test_a_fallback_encoding_past_an_ascii_first_mib(engine: sa.Engine, inbox: Path) -> None:
    data, n = _past_the_first_mib([contact("1", first="René"), contact("2", first="Zoë")])
    report = load(
        put(inbox, "hubspot", "contacts", "late-cp1252.csv", data.decode().encode("cp1252")),
        "hubspot",
        "contacts",
        records=n,
    )
    assert counts(report) == (n, n, 0, 0, 0, 0)
    stored = rows(engine, "contacts")
    assert (stored["1"]["first_name"], stored["2"]["first_name"]) == ("René", "Zoë")


def test_a_bom_is_not_part_of_the_first_header(engine: sa.Engine, inbox: Path) -> None:
    data = "\ufeff".encode() + csv_bytes(CONTACT_HEADER, [contact("1"), contact("2")])
    report = load(put(inbox, "hubspot", "contacts", "bom.csv", data), "hubspot", "contacts", records=2)
    assert counts(report) == (2, 2, 0, 0, 0, 0)
    assert report.drift == []


def test_not_a_number_in_an_amount(engine: sa.Engine, inbox: Path) -> None:
    data = csv_bytes(
        DEAL_HEADER, [deal("1"), deal("2", amount="N/A"), deal("3", amount=""), deal("4", amount="-5")]
    )
    report = load(put(inbox, "hubspot", "deals", "deals.csv", data), "hubspot", "deals", records=4)
    assert counts(report) == (4, 2, 0, 0, 0, 2)
    assert [
        (d["natural_key"], d["stage"], d["check_name"], d["column_name"], d["offending_value"])
        for d in dead(engine)
    ] == [
        ("2", "map", "not_a_number", "Amount", "N/A"),
        ("4", "validate", "amount:greater_than_or_equal_to(0)", "Amount", "-5.0"),
    ]
    assert ("type_change", "Amount") in drift_of(report)
    stored = rows(engine, "deals")
    assert float(stored["1"]["amount"]) == 1500.0 and stored["3"]["amount"] is None


def test_odoo_dates(engine: sa.Engine, inbox: Path) -> None:
    # false in a nullable date -> null; a date in another format -> quarantined.
    moves = [
        invoice(1),
        invoice(2, invoice_date=False, state="draft", name=False),
        invoice(3, invoice_date="19/11/2026"),
    ]
    report = load(
        put(inbox, "odoo", "account.move", "moves.json", json.dumps(moves)), "odoo", "account.move", records=3
    )
    assert counts(report) == (3, 2, 0, 0, 0, 1)
    stored = rows(engine, "invoices")
    assert stored["1"]["invoice_date"].replace(tzinfo=None).isoformat() == "2026-11-19T00:00:00"
    assert (stored["2"]["invoice_date"], stored["2"]["name"], stored["2"]["state"]) == (None, None, "draft")
    assert (stored["1"]["currency"], stored["1"]["customer_id"]) == ("USD", "14")
    [letter] = dead(engine, "moves.json")
    assert (
        letter["natural_key"],
        letter["check_name"],
        letter["column_name"],
        letter["offending_value"],
    ) == ("3", "date_format", "invoice_date", "19/11/2026")
    assert ("format_change", "invoice_date") in drift_of(report)
    # false in a required date -> quarantined.
    report = load(
        put(inbox, "odoo", "sale.order", "orders.json", json.dumps([order(1), order(2, date=False)])),
        "odoo",
        "sale.order",
        records=2,
    )
    assert counts(report) == (2, 1, 0, 0, 0, 1)
    [letter] = dead(engine, "orders.json")
    assert (letter["natural_key"], letter["stage"], letter["check_name"], letter["column_name"]) == (
        "2",
        "map",
        "required",
        "date_order",
    )
    assert letter["reason"] == "required value missing in 'date_order'"


def test_negative_quantity(engine: sa.Engine, inbox: Path) -> None:
    load(put(inbox, "odoo", "sale.order", "o.jsonl", jsonl([order(1)])), "odoo", "sale.order")
    path = put(inbox, "odoo", "sale.order.line", "l.jsonl", jsonl([line(1, 1), line(2, 1, qty=-2.0)]))
    report = load(path, "odoo", "sale.order.line", records=2)
    assert counts(report) == (2, 1, 0, 0, 0, 1)
    [letter] = dead(engine, "l.jsonl")
    assert (
        letter["natural_key"],
        letter["stage"],
        letter["check_name"],
        letter["column_name"],
        letter["offending_value"],
    ) == ("2", "validate", "quantity:greater_than_or_equal_to(0)", "product_uom_qty", "-2.0")


def test_order_line_of_an_unknown_order_waits_for_its_order(engine: sa.Engine, inbox: Path) -> None:
    load(put(inbox, "odoo", "sale.order", "o1.jsonl", jsonl([order(1)])), "odoo", "sale.order")
    lines = put(inbox, "odoo", "sale.order.line", "l.jsonl", jsonl([line(1, 1), line(2, 99), line(3, 99)]))
    report = load(lines, "odoo", "sale.order.line", records=3)
    assert counts(report) == (3, 1, 0, 0, 0, 2)
    letters = dead(engine, "l.jsonl")
    assert [
        (d["natural_key"], d["stage"], d["check_name"], d["column_name"], d["offending_value"])
        for d in letters
    ] == [
        ("2", "load", "reference:order_id->sales_orders", "order_id", "99"),
        ("3", "load", "reference:order_id->sales_orders", "order_id", "99"),
    ]
    assert "refers to sales_orders id '99', which is not in the warehouse" in letters[0]["reason"]
    # Once the order is loaded the same lines go through.
    load(put(inbox, "odoo", "sale.order", "o2.jsonl", jsonl([order(99)])), "odoo", "sale.order")
    again = load(lines, "odoo", "sale.order.line", force=True, records=3)
    assert counts(again) == (3, 2, 0, 1, 0, 0)
    assert sorted(rows(engine, "sales_order_lines")) == ["1", "2", "3"]


def test_odoo_many2one_and_currency(engine: sa.Engine, inbox: Path) -> None:
    orders = [order(1, client_order_ref="15000000001", currency_id=[125, "EUR"]), order(2, partner_id=False)]
    report = load(
        put(inbox, "odoo", "sale.order", "o.json", json.dumps(orders)), "odoo", "sale.order", records=2
    )
    assert counts(report) == (2, 1, 0, 0, 0, 1)
    stored = rows(engine, "sales_orders")["1"]
    assert (stored["customer_id"], stored["currency"], stored["client_order_ref"], stored["state"]) == (
        "14",
        "EUR",
        "15000000001",
        "sale",
    )
    [letter] = dead(engine)
    assert (letter["check_name"], letter["column_name"]) == ("required", "partner_id")


# -- the demo sample, end to end --------------------------------------------------------------------------
def _check_prefix(name: str) -> str:
    return re.sub(r"\(.*\)$", "", name)  # "email:str_matches('^…$')" -> "email:str_matches"


def test_sample_generator_is_deterministic(tmp_path: Path) -> None:
    a, b = generate_batch_samples(tmp_path / "a", seed=7), generate_batch_samples(tmp_path / "b", seed=7)
    assert {k: v for k, v in a.items() if k != "inbox"} == {k: v for k, v in b.items() if k != "inbox"}
    for rel in a["load_order"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    c = generate_batch_samples(tmp_path / "c", seed=8)
    assert (tmp_path / "c" / c["load_order"][0]).read_bytes() != (
        tmp_path / "a" / a["load_order"][0]
    ).read_bytes()
    mtimes = [(tmp_path / "a" / rel).stat().st_mtime for rel in a["load_order"]]
    assert mtimes == sorted(mtimes) and len(set(mtimes)) == len(mtimes)


@pytest.mark.slow
def test_sample_loads_exactly_as_its_manifest_says(engine: sa.Engine, inbox: Path) -> None:
    manifest = generate_batch_samples(inbox)
    assert [(f["system"], f["entity"]) for f in manifest["files"]] == [
        tuple(p.split("/")[:2]) for p in manifest["load_order"]
    ]
    for f in manifest["files"]:
        report = load(inbox / f["path"], f["system"], f["entity"], records=f["records"])
        assert report.contract == f["contract"], f["path"]
        got = {k: getattr(report, k) for k in f["expected"]}
        assert got == f["expected"], f["path"]
        assert sorted(f"{d['kind']}:{d['column']}" for d in report.drift) == f["drift"], f["path"]
        by_check: dict[str, int] = {}
        for d in dead(engine, Path(f["path"]).name):
            by_check[_check_prefix(d["check_name"])] = by_check.get(_check_prefix(d["check_name"]), 0) + 1
        assert by_check == f["bad_rows"], f["path"]
    with engine.connect() as conn:
        totals = {
            t: conn.execute(sa.select(sa.func.count()).select_from(CANONICAL_TABLES[t])).scalar_one()
            for t in manifest["totals"]
        }
    assert totals == manifest["totals"]
    assert len(dead(engine)) == manifest["bad_rows"]

    # Older versions that arrived later did not win.
    for stale in manifest["stale_updates"]:
        stored = rows(engine, stale["table"])[stale["source_id"]]
        kept = datetime.fromisoformat(stale["kept_updated_at"]).replace(tzinfo=None)
        assert stored["source_updated_at"].replace(tzinfo=None) == kept
        for key in ("kept_phone", "kept_state"):
            if key in stale:
                assert stored[key.removeprefix("kept_")] == stale[key]

    # The CRM and the ERP agree, except where the manifest says they deliberately do not.
    deals, orders = rows(engine, "deals"), rows(engine, "sales_orders")
    companies, customers = rows(engine, "companies"), rows(engine, "customers")
    invoices = rows(engine, "invoices")
    won = {k for k, d in deals.items() if d["is_closed_won"]}
    refs = {o["client_order_ref"]: o for o in orders.values() if o["client_order_ref"]}
    rec = manifest["reconciliation"]
    assert sorted(won - set(refs)) == rec["closed_won_deals_without_order"]
    assert len(won & set(refs)) == rec["closed_won_deals_with_order"]
    for gap in rec["orders_for_deals_not_won"]:
        assert (
            deals[gap["deal_id"]]["stage"] == gap["deal_stage"]
            and refs[gap["deal_id"]]["name"] == gap["order"]
        )
    for gap in rec["orders_for_unknown_deals"]:
        assert gap["deal_id"] not in deals and refs[gap["deal_id"]]["name"] == gap["order"]
    for deal_id in won & set(refs):
        assert float(refs[deal_id]["amount_untaxed"]) == pytest.approx(float(deals[deal_id]["amount"]))
    assert {c["odoo_partner_id"] for c in companies.values() if c["odoo_partner_id"]} <= set(customers)
    assert all(
        customers[c["odoo_partner_id"]]["is_company"] for c in companies.values() if c["odoo_partner_id"]
    )
    names = {o["name"] for o in orders.values()}
    assert {i["invoice_origin"] for i in invoices.values()} <= names

    # Replaying every file (forced past the duplicate-file check) changes nothing.
    for f in manifest["files"]:
        report = load(inbox / f["path"], f["system"], f["entity"], force=True, records=f["records"])
        assert (report.rows_inserted, report.rows_updated) == (0, 0), f["path"]
        assert report.rows_quarantined == sum(f["bad_rows"].values()), f["path"]


def test_companies_export_in_contacts_folder_is_rejected_not_loaded_as_contacts(
    warehouse_url: str, tmp_path: Path
) -> None:
    """Both exports share Record ID and Last Modified Date; the column coverage tells them apart."""
    path = tmp_path / "companies.csv"
    path.write_text(
        '"Record ID","Company name","Company Domain Name","Industry","Country/Region","Odoo Partner ID",'
        '"Create Date","Last Modified Date","Company owner"\n'
        '"9001","Acme","acme.example","Computer Software","United States","","2024-01-01 10:00","2024-02-01 10:00","Sam"\n',
        encoding="utf-8",
    )
    report = ingest_file(path, "hubspot", "contacts")
    assert report.status == "rejected" and report.reason_code == "wrong_folder"
    assert "hubspot/companies" in report.error
