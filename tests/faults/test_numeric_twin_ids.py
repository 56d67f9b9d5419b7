"""RELIABILITY #28, numeric-twin ids: one Odoo partner sent as ``42``, ``"042"``, ``"42.0"`` and ``4.2e1``
and one HubSpot contact as ``7001``, ``07001``, ``7001.0``, ``7001e0``, next to values that are not ids
(``"abc"``, ``true``, ``-1``). One row per real record, the invalid ones dead-lettered ``invalid_id``, and
the accounting's own normalisation finds no twins."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.ingest.load import ingest_file
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import dead_letters
from tests.faults.accounting import Figures, account_rows, backend_of
from tests.faults.files import contact_row, inbox_folder, write_contacts


def partner(pid: Any, write: str, name: str) -> dict[str, Any]:
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


def _invalid(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.scalars(
                sa.select(dead_letters.c.offending_value).where(dead_letters.c.check_name == "invalid_id")
            )
        )


def test_numeric_twin_ids_odoo(
    warehouse_url: str, isolated_env: Path, record: Callable[..., Figures]
) -> None:
    records = [
        partner(42, "2026-11-20 10:00:00", "v1"),
        partner("042", "2026-11-20 11:00:00", "v2"),
        partner("42.0", "2026-11-20 12:00:00", "v3"),
        partner(4.2e1, "2026-11-20 09:00:00", "v0"),
        partner("abc", "2026-11-20 10:00:00", "x"),
        partner(True, "2026-11-20 10:00:00", "y"),
        partner(7, "2026-11-20 10:00:00", "z"),
    ]
    path = inbox_folder(isolated_env, "odoo", "res.partner") / "partners.json"
    path.write_text(json.dumps(records))
    report = ingest_file(path, "odoo", "res.partner")
    assert report.status == "succeeded", report.as_dict()
    engine = get_engine(warehouse_url)
    invalid = _invalid(engine)
    assert invalid == {"abc", "True"}
    fig = account_rows(
        engine,
        "numeric-twin ids (Odoo)",
        table="customers",
        source_system="odoo",
        entity="res.partner",
        sent_ids=["42", "042", "42.0", "42", "abc", "True", "7"],
        backend=backend_of(warehouse_url),
    )
    record(fig, applied=2, dead_lettered=2)


def test_numeric_twin_ids_hubspot(
    warehouse_url: str, isolated_env: Path, record: Callable[..., Figures]
) -> None:
    spellings = [
        ("7001", "2026-11-20 10:00"),
        ("07001", "2026-11-20 11:00"),
        ("7001.0", "2026-11-20 12:00"),
        ("7001e0", "2026-11-20 13:00"),
        ("7002", "2026-11-20 10:00"),
        ("-1", "2026-11-20 10:00"),
        ("abc", "2026-11-20 10:00"),
    ]
    rows = [contact_row(0, modified, **{"Record ID": rid}) for rid, modified in spellings]
    path = inbox_folder(isolated_env) / "contacts.csv"
    ids = write_contacts(path, rows)
    report = ingest_file(path, "hubspot", "contacts")
    assert report.status == "succeeded", report.as_dict()
    engine = get_engine(warehouse_url)
    assert _invalid(engine) == {"-1", "abc"}
    fig = account_rows(
        engine,
        "numeric-twin ids (HubSpot)",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        backend=backend_of(warehouse_url),
    )
    record(fig, applied=2, dead_lettered=2)
