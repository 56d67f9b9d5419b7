"""Source ids are canonical end to end, on SQLite and Postgres: numeric twins in exports become one record, a
value that is not an id is quarantined with ``invalid_id``, references normalise like the keys they point at,
and the ``keys`` check fails on twins (and on non-canonical ids) a warehouse already holds."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.ingest.load import ingest_file
from integration_assets.policies import load_policies
from integration_assets.quality import integrity
from integration_assets.warehouse.ledger import LoadReport
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters

CONTACT_HEADER = [
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Lifecycle Stage",
    "Primary Associated Company ID",
    "Last Modified Date",
]


def put(tmp_path: Path, system: str, entity: str, name: str, text: str) -> Path:
    path = tmp_path / "inbox" / system / entity / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, system: str, entity: str) -> LoadReport:
    report = ingest_file(path, system, entity)
    assert report.status == "succeeded", report.as_dict()
    assert report.balanced, report.as_dict()
    return report


def ids_of(engine: sa.Engine, table: str) -> list[str]:
    t = CANONICAL_TABLES[table]
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(t.c.source_id)).scalars())


def quarantined(engine: sa.Engine, load_id: str) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                sa.select(
                    dead_letters.c.check_name, dead_letters.c.column_name, dead_letters.c.offending_value
                ).where(dead_letters.c.load_id == load_id)
            ).tuples()
        )


def partner(pid: Any, write: str, name: str = "Azure Interior") -> dict[str, Any]:
    return {
        "id": pid,
        "name": name,
        "email": False,
        "phone": False,
        "is_company": True,
        "parent_id": False,
        "street": False,
        "city": "Fremont",
        "zip": False,
        "country_id": [233, "United States"],
        "vat": False,
        "active": True,
        "write_date": write,
    }


def test_odoo_partner_ids_are_canonical(engine: sa.Engine, tmp_path: Path) -> None:
    records = [
        partner(42, "2026-11-20 10:00:00", "v1"),
        partner("042", "2026-11-20 11:00:00", "v2"),
        partner("42.0", "2026-11-20 12:00:00", "v3"),
        partner(4.2e1, "2026-11-20 09:00:00", "v0"),
        partner("abc", "2026-11-20 10:00:00"),
        partner(True, "2026-11-20 10:00:00"),
        partner(-7, "2026-11-20 10:00:00"),
        partner(42.5, "2026-11-20 10:00:00"),
        partner(7, "2026-11-20 10:00:00"),
    ]
    path = put(tmp_path, "odoo", "res.partner", "partners.json", json.dumps(records))
    report = load(path, "odoo", "res.partner")
    # One row per real record: 42 (four spellings, the newest wins) and 7.
    assert ids_of(engine, "customers") == ["42", "7"]
    assert (report.rows_read, report.rows_inserted, report.rows_duplicate, report.rows_quarantined) == (
        9,
        2,
        3,
        4,
    )
    t = CANONICAL_TABLES["customers"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.c.name).where(t.c.source_id == "42")).scalar_one() == "v3"
    assert quarantined(engine, report.load_id) == [
        ("invalid_id", "id", "-7"),
        ("invalid_id", "id", "42.5"),
        ("invalid_id", "id", "True"),
        ("invalid_id", "id", "abc"),
    ]
    # A later export spelling the id differently updates the same record.
    again = load(
        put(
            tmp_path,
            "odoo",
            "res.partner",
            "later.jsonl",
            json.dumps(partner("0042", "2026-11-21 10:00:00", "v4")) + "\n",
        ),
        "odoo",
        "res.partner",
    )
    assert (again.rows_inserted, again.rows_updated) == (0, 1)
    assert ids_of(engine, "customers") == ["42", "7"]


def test_hubspot_contact_ids_are_canonical(engine: sa.Engine, tmp_path: Path) -> None:
    def row(rid: str, modified: str, company: str = "9001") -> list[str]:
        return [rid, "Ann", "Lee", "ann@example.com", "Lead", company, modified]

    rows = [
        row("7001", "2026-11-20 10:00"),
        row("07001", "2026-11-20 11:00"),
        row("7001.0", "2026-11-20 12:00"),
        row("7001e0", "2026-11-20 13:00", company="09001.0"),
        row("7002", "2026-11-20 10:00", company="x1"),
        row("0", "2026-11-20 10:00"),
        row("-1", "2026-11-20 10:00"),
    ]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CONTACT_HEADER)
    w.writerows(rows)
    report = load(put(tmp_path, "hubspot", "contacts", "contacts.csv", buf.getvalue()), "hubspot", "contacts")
    assert ids_of(engine, "contacts") == ["7001"]
    assert (report.rows_inserted, report.rows_duplicate, report.rows_quarantined) == (1, 3, 3)
    t = CANONICAL_TABLES["contacts"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.c.company_id)).scalar_one() == "9001"  # references normalise too
    assert quarantined(engine, report.load_id) == [
        ("invalid_id", "Primary Associated Company ID", "x1"),
        ("invalid_id", "Record ID", "-1"),
        ("invalid_id", "Record ID", "0"),
    ]


def test_a_reference_spelled_differently_finds_its_parent(engine: sa.Engine, tmp_path: Path) -> None:
    order = {
        "id": 7,
        "name": "S00007",
        "partner_id": [14, "Azure"],
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
    load(put(tmp_path, "odoo", "sale.order", "orders.json", json.dumps([order])), "odoo", "sale.order")
    line = {
        "id": "0001",
        "order_id": ["007", "S00007"],
        "product_id": [7, "Desk"],
        "name": "Desk",
        "product_uom_qty": 1.0,
        "qty_delivered": 0.0,
        "qty_invoiced": 0.0,
        "price_unit": 1.0,
        "discount": 0.0,
        "price_subtotal": 1.0,
        "price_total": 1.0,
        "write_date": "2026-11-19 12:00:00",
    }
    report = load(
        put(tmp_path, "odoo", "sale.order.line", "lines.json", json.dumps([line])), "odoo", "sale.order.line"
    )
    assert (report.rows_inserted, report.rows_quarantined) == (1, 0)
    t = CANONICAL_TABLES["sales_order_lines"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(t.c.source_id, t.c.order_id)).one() == ("1", "7")


# -- the keys check on a warehouse that already holds twins ---------------------------------------------------
def _seed(engine: sa.Engine, table: str, system: str, *source_ids: str) -> None:
    t = CANONICAL_TABLES[table]
    with engine.begin() as conn:
        for i, sid in enumerate(source_ids):
            extra = {"name": f"n{sid}"} if "name" in t.c else {}
            conn.execute(
                t.insert().values(
                    source_system=system,
                    source_id=sid,
                    mapping_version="old@v1",
                    load_id="ld_old",
                    row_hash=i,
                    source_updated_at=sa.func.current_timestamp(),
                    **extra,
                )
            )


def test_keys_check_fails_on_numeric_twins_already_stored(engine: sa.Engine) -> None:
    policies = load_policies()
    _seed(engine, "customers", "odoo", "42", "7", "8")
    with engine.begin() as conn:
        assert integrity.keys(conn, "customers", policies).passed
    _seed(engine, "customers", "odoo", "042", "42.0", "0008", "0099")
    with engine.begin() as conn:
        out = integrity.keys(conn, "customers", policies)
    assert not out.passed and out.severity == "ERROR"
    twins = out.metadata["numeric_twins"]
    assert twins["groups"] == 2
    assert twins["sample"] == [
        {"source_system": "odoo", "key": "42", "source_ids": ["042", "42", "42.0"]},
        {"source_system": "odoo", "key": "8", "source_ids": ["0008", "8"]},
    ]
    odd = out.metadata["non_canonical_ids"]
    assert odd["rows"] == 4  # 0099 has no twin yet; the next load of record 99 would make one
    assert {"source_system": "odoo", "source_id": "0099", "canonical": "99"} in odd["sample"]
    assert "numeric twins" in out.description and "not in canonical form" in out.description


def test_keys_check_finds_hubspot_twins_and_ids_that_are_no_ids(engine: sa.Engine) -> None:
    _seed(engine, "contacts", "hubspot", "7001", "07001", "7001e0", "abc")
    with engine.begin() as conn:
        out = integrity.keys(conn, "contacts", load_policies())
    assert not out.passed
    assert out.metadata["numeric_twins"]["sample"] == [
        {"source_system": "hubspot", "key": "7001", "source_ids": ["07001", "7001", "7001e0"]}
    ]
    assert {"source_system": "hubspot", "source_id": "abc", "canonical": None} in out.metadata[
        "non_canonical_ids"
    ]["sample"]
