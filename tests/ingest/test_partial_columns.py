"""A file without an optional column leaves that column's stored values untouched (contract ``on_missing: keep``,
the default), on SQLite and Postgres; ``on_missing: null`` sets them to null (whole-record sources).

The merged row (stored values for the columns the file lacks, the file's for the others) is what is compared
and stored: newer wins, an equal timestamp goes to the larger hash of the merged row (a forced re-load wins
any tie whose content differs), an older partial row changes nothing, and the stored row hash is the hash of the stored row, so replays are "unchanged".
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from integration_assets.contracts.spec import CONTRACTS_DIR, clear_cache
from integration_assets.ingest.load import ingest_file
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.ledger import LoadReport
from integration_assets.warehouse.schema import CANONICAL_TABLES, schema_drift

HEADER = [
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
IDS = [str(7000 + i) for i in range(1, 16)]  # 15 contacts: enough for both outcomes of a hash tie-break


def contact(rid: str, modified: str, *, first: str = "Ann", email: str | None = None) -> dict[str, str]:
    return {
        "Record ID": rid,
        "First Name": first,
        "Last Name": "Smith",
        "Email": email or f"c{rid}@example.com",
        "Phone Number": "+1 555 0100",
        "Lifecycle Stage": "Lead",
        "Lead Status": "New",
        "Primary Associated Company ID": "9000000001",
        "Country/Region": "United States",
        "Create Date": "2026-01-05 09:30",
        "Last Modified Date": modified,
    }


def write(inbox: Path, name: str, records: list[dict[str, str]], *, drop: tuple[str, ...] = ()) -> Path:
    header = [h for h in HEADER if h not in drop]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(records)
    path = inbox / "hubspot" / "contacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def load(path: Path, **kw: Any) -> LoadReport:
    report = ingest_file(path, "hubspot", "contacts", **kw)
    assert report.status == "succeeded", report.as_dict()
    assert report.balanced, report.as_dict()
    return report


def stored(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    t = CANONICAL_TABLES["contacts"]
    with engine.connect() as conn:
        return {r.source_id: dict(r._mapping) for r in conn.execute(sa.select(t))}


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    return tmp_path / "inbox"


def test_newer_export_without_email_keeps_stored_emails(engine: sa.Engine, inbox: Path) -> None:
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS]))
    newer = [contact(i, "2026-11-21 10:00", first="Bea") for i in IDS]
    report = load(write(inbox, "no_email.csv", newer, drop=("Email",)))
    assert (report.rows_inserted, report.rows_updated, report.rows_unchanged) == (0, 15, 0)
    rows = stored(engine)
    assert {r["email"] for r in rows.values()} == {f"c{i}@example.com" for i in IDS}  # kept, not erased
    assert {r["first_name"] for r in rows.values()} == {"Bea"}  # the columns the file carries are updated
    assert {r["source_updated_at"].isoformat()[:16] for r in rows.values()} == {"2026-11-21T10:00"}
    # The absence is still reported as drift, for the record.
    with engine.connect() as conn:
        kinds = {
            (r.kind, r.column_name)
            for r in conn.execute(sa.select(schema_drift).where(schema_drift.c.load_id == report.load_id))
        }
    assert ("missing_column", "Email") in kinds


def test_equal_timestamp_partial_file_never_erases(engine: sa.Engine, inbox: Path) -> None:
    """Same timestamp, different content: the tie-break may go either way per row, but the e-mails stay."""
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS]))
    same = [contact(i, "2026-11-20 10:00", first="Cy") for i in IDS]
    first = load(write(inbox, "no_email.csv", same, drop=("Email",)))
    assert first.rows_updated + first.rows_unchanged == 15
    rows = stored(engine)
    assert {r["email"] for r in rows.values()} == {f"c{i}@example.com" for i in IDS}
    # The same partial file again, forced (a re-load under the current contract): it wins the ties it lost.
    lost = sum(r["first_name"] != "Cy" for r in rows.values())
    assert 0 < lost < 15  # both outcomes of the unforced tie-break
    again = load(write(inbox, "no_email.csv", same, drop=("Email",)), force=True)
    assert (again.rows_updated, again.rows_unchanged) == (lost, 15 - lost)
    rows = stored(engine)
    assert {r["first_name"] for r in rows.values()} == {"Cy"}
    assert {r["email"] for r in rows.values()} == {f"c{i}@example.com" for i in IDS}
    # The stored hash is the merged row's, so once more changes nothing, forced or not.
    assert (load(write(inbox, "no_email.csv", same, drop=("Email",)), force=True).rows_unchanged) == 15
    assert stored(engine) == rows


def test_partial_file_with_the_stored_content_is_unchanged(engine: sa.Engine, inbox: Path) -> None:
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS]))
    report = load(
        write(inbox, "no_email.csv", [contact(i, "2026-11-20 10:00") for i in IDS], drop=("Email",))
    )
    assert (report.rows_updated, report.rows_unchanged) == (0, 15)


def test_older_partial_file_changes_nothing(engine: sa.Engine, inbox: Path) -> None:
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS]))
    before = stored(engine)
    older = [contact(i, "2026-11-19 10:00", first="Old") for i in IDS]
    report = load(write(inbox, "old.csv", older, drop=("Email", "Phone Number")))
    assert (report.rows_updated, report.rows_unchanged) == (0, 15)
    assert stored(engine) == before


def test_whole_file_after_a_partial_one_compares_on_content(engine: sa.Engine, inbox: Path) -> None:
    """The stored hash of a merged row is the hash of a whole row with the same content."""
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS]))
    newer = [contact(i, "2026-11-21 10:00", first="Bea") for i in IDS]
    load(write(inbox, "no_email.csv", newer, drop=("Email",)))
    before = stored(engine)
    whole = load(write(inbox, "whole.csv", newer))  # the same content, e-mails included
    assert (whole.rows_updated, whole.rows_unchanged) == (0, 15)
    assert {k: v["row_hash"] for k, v in stored(engine).items()} == {
        k: v["row_hash"] for k, v in before.items()
    }


def test_partial_first_load_then_new_keys_and_existing_keys(engine: sa.Engine, inbox: Path) -> None:
    """Into an empty table (the Postgres fast path) a partial row has nothing to keep: null. A later partial
    file updates the keys that exist, keeps their other columns, and inserts the new keys with nulls."""
    first = load(
        write(inbox, "first.csv", [contact(i, "2026-11-20 10:00") for i in IDS[:5]], drop=("Email",))
    )
    assert first.rows_inserted == 5
    assert {r["email"] for r in stored(engine).values()} == {None}
    load(write(inbox, "full.csv", [contact(i, "2026-11-21 10:00") for i in IDS[:5]]))
    mixed = [contact(i, "2026-11-22 10:00", first="Dee") for i in IDS[:10]]
    report = load(write(inbox, "mixed.csv", mixed, drop=("Email", "Phone Number")))
    assert (report.rows_inserted, report.rows_updated) == (5, 5)
    rows = stored(engine)
    assert {i: rows[i]["email"] for i in IDS[:5]} == {i: f"c{i}@example.com" for i in IDS[:5]}
    assert {rows[i]["phone"] for i in IDS[:5]} == {"+1 555 0100"}
    assert {rows[i]["email"] for i in IDS[5:10]} == {None}
    assert {rows[i]["first_name"] for i in IDS[:10]} == {"Dee"}


def test_in_file_duplicates_of_a_partial_file(engine: sa.Engine, inbox: Path) -> None:
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS[:3]]))
    recs = [
        contact(IDS[0], "2026-11-21 10:00", first="Old"),
        contact(IDS[0], "2026-11-22 10:00", first="New"),
        contact(IDS[1], "2026-11-21 10:00", first="Two"),
    ]
    report = load(write(inbox, "dups.csv", recs, drop=("Email",)))
    assert (report.rows_updated, report.rows_duplicate, report.rows_unchanged) == (2, 1, 0)
    rows = stored(engine)
    assert (rows[IDS[0]]["first_name"], rows[IDS[0]]["email"]) == ("New", f"c{IDS[0]}@example.com")
    assert (rows[IDS[1]]["first_name"], rows[IDS[1]]["email"]) == ("Two", f"c{IDS[1]}@example.com")


def test_required_column_missing_is_still_rejected(engine: sa.Engine, inbox: Path) -> None:
    report = ingest_file(
        write(inbox, "no_id.csv", [contact(i, "2026-11-20 10:00") for i in IDS], drop=("Record ID",)),
        "hubspot",
        "contacts",
    )
    assert (report.status, report.reason_code) == ("rejected", "missing_required_columns")


def test_on_missing_null_sets_absent_columns_to_null(
    engine: sa.Engine, inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = root / "hubspot" / "contacts_export.v1.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("formats: [csv]\n", 'formats: [csv]\non_missing: "null"\n'),
        encoding="utf-8",
    )
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))
    clear_cache()
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS]))
    load(write(inbox, "no_email.csv", [contact(i, "2026-11-21 10:00") for i in IDS], drop=("Email",)))
    assert {r["email"] for r in stored(engine).values()} == {None}


def test_a_replayed_dead_letter_of_a_partial_file_keeps_stored_values(
    engine: sa.Engine, inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead letter of a file without Email holds no Email either: its replay must not erase it."""
    from integration_assets.dead_letters.queries import Filter
    from integration_assets.ingest.replay import replay

    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))
    clear_cache()
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS[:3]]))
    newer = [contact(i, "2026-11-21 10:00", first="Eve") for i in IDS[:3]]
    newer[0]["Lifecycle Stage"] = "Prospect"  # unknown to the contract: quarantined
    report = load(write(inbox, "no_email.csv", newer, drop=("Email",)))
    assert (report.rows_updated, report.rows_quarantined) == (2, 1)
    path = root / "hubspot" / "contacts_export.v1.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "      Other: other\n", "      Other: other\n      Prospect: opportunity\n", 1
        ),
        encoding="utf-8",
    )
    clear_cache()
    out = replay(Filter(check="unknown_value"))
    assert len(out.replayed) == 1
    row = stored(engine)[IDS[0]]
    assert (row["first_name"], row["lifecycle_stage"], row["email"]) == (
        "Eve",
        "opportunity",
        f"c{IDS[0]}@example.com",
    )


@pytest.mark.postgres
def test_postgres_partial_merge_keeps_a_value_changed_while_it_waited(
    pg_database: str, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept columns are read by the merge's UPDATE itself: a phone changed (by a HubSpot property change)
    while the merge waited for that row is what stays, not the value the row had when the merge began."""
    import threading

    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", pg_database)
    engine = get_engine(pg_database)
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS[:3]]))
    result: dict[str, LoadReport] = {}
    with engine.connect() as holder:
        tx = holder.begin()
        holder.execute(
            sa.text("UPDATE contacts SET phone = '+1 555 0199' WHERE source_id = :i"), {"i": IDS[0]}
        )
        newer = [contact(i, "2026-11-21 10:00", first="Fay") for i in IDS[:3]]
        path = write(inbox, "no_phone.csv", newer, drop=("Phone Number",))
        worker = threading.Thread(target=lambda: result.setdefault("r", load(path)))
        worker.start()
        with engine.connect() as watch:  # wait until the merge waits for the row this transaction holds
            waiting = 0
            while worker.is_alive() and not waiting:
                worker.join(0.05)
                waiting = watch.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query LIKE '%src AS MATERIALIZED%'"
                    )
                ).scalar_one()
                watch.rollback()
        assert waiting, "the merge did not wait for the locked row"
        tx.commit()
        worker.join()
    assert result["r"].rows_updated == 3
    rows = stored(engine)
    assert (rows[IDS[0]]["first_name"], rows[IDS[0]]["phone"]) == ("Fay", "+1 555 0199")
    assert {rows[i]["phone"] for i in IDS[1:3]} == {"+1 555 0100"}


def test_chunks_of_one_file_that_carry_different_columns(
    engine: sa.Engine, inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON records are read in chunks; a chunk whose records all lack a key keeps that column for its rows
    only, while the rows of a chunk that has it are written, whatever the order of the chunks."""
    monkeypatch.setenv("INTEGRATION_CHUNK_ROWS", "2")
    load(write(inbox, "full.csv", [contact(i, "2026-11-20 10:00") for i in IDS[:6]]))

    def api(rid: str, with_email: bool) -> dict[str, Any]:
        props = {"lastmodifieddate": "2026-11-21T10:00:00.000Z", "firstname": "Gus"}
        if with_email:
            props["email"] = f"new{rid}@example.com"
        return {"id": rid, "properties": props}

    # Chunks: [no e-mail x2], [e-mail x2], [no e-mail x2].
    records = [api(i, with_email=n in (2, 3)) for n, i in enumerate(IDS[:6])]
    path = inbox / "hubspot" / "contacts" / "api.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    report = load(path)
    assert report.rows_updated == 6
    rows = stored(engine)
    assert [rows[i]["email"] for i in IDS[:6]] == [
        f"c{IDS[0]}@example.com",
        f"c{IDS[1]}@example.com",
        f"new{IDS[2]}@example.com",
        f"new{IDS[3]}@example.com",
        f"c{IDS[4]}@example.com",
        f"c{IDS[5]}@example.com",
    ]
    assert {rows[i]["first_name"] for i in IDS[:6]} == {"Gus"}
    assert {rows[i]["phone"] for i in IDS[:6]} == {"+1 555 0100"}  # no chunk carries phone


def test_kept_numbers_booleans_and_names_hash_like_whole_rows(engine: sa.Engine, inbox: Path) -> None:
    """Products: kept decimals, booleans and many2one names read back from the warehouse hash exactly like
    the same values mapped from a file (a whole file with the merged content is unchanged)."""

    def product(pid: int, write: str, name: str, with_all: bool) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "id": pid,
            "name": name,
            "type": "consu",
            "write_date": write,
            "default_code": False,
        }
        if with_all:
            rec.update(
                {
                    "list_price": 12.5 + pid,
                    "standard_price": 0.1 * pid,
                    "active": pid % 2 == 0,
                    "categ_id": [1, "All / Saleable"],
                    "barcode": f"40{pid:05d}",
                }
            )
        return rec

    def put(name: str, records: list[dict[str, Any]]) -> Path:
        path = inbox / "odoo" / "product.product" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records), encoding="utf-8")
        return path

    def run(path: Path) -> LoadReport:
        report = ingest_file(path, "odoo", "product.product")
        assert report.status == "succeeded" and report.balanced, report.as_dict()
        return report

    run(put("full.json", [product(i, "2026-11-20 10:00:00", "Desk", True) for i in range(1, 9)]))
    partial = run(put("names.json", [product(i, "2026-11-21 10:00:00", "Table", False) for i in range(1, 9)]))
    assert partial.rows_updated == 8
    t = CANONICAL_TABLES["products"]
    with engine.connect() as conn:
        kept = {
            r.source_id: (r.name, float(r.list_price), r.active, r.category)
            for r in conn.execute(sa.select(t))
        }
    assert kept["3"] == ("Table", 15.5, False, "All / Saleable")
    whole = run(put("whole.json", [product(i, "2026-11-21 10:00:00", "Table", True) for i in range(1, 9)]))
    assert (whole.rows_updated, whole.rows_unchanged) == (0, 8)
