"""The dead-letter CSV export (integration_assets.dead_letters.export): ids and business keys are kept, personal
data (e-mails, phones, names, addresses) is not, and no cell runs as a formula."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from integration_assets.dead_letters import export, store
from integration_assets.dead_letters.queries import Filter


def _row(fp: str, entity: str, key: str, column: str, value: str, reason: str) -> dict:
    return {
        "fingerprint": fp,
        "source_system": "hubspot" if entity != "res.partner" else "odoo",
        "entity": entity,
        "stage": "map",
        "check_name": "unknown_value",
        "natural_key": key,
        "column_name": column,
        "offending_value": value,
        "reason": reason,
        "raw_record": '{"secret": "not exported"}',
    }


def _export(engine: sa.Engine, rows: list[dict]) -> dict[str, dict[str, str]]:
    with engine.begin() as conn:
        store.write_row_dead_letters(conn, rows)
        text = export.export_csv(conn, Filter())
    assert "not exported" not in text
    return {r["natural_key"]: r for r in csv.DictReader(io.StringIO(text))}


def test_deal_ids_and_business_keys_survive_the_export(engine: sa.Engine) -> None:
    by_key = _export(
        engine,
        [
            _row(
                "d1",
                "deals",
                "48213377905",
                "Deal Stage",
                "Won (verbal)",
                "unknown value 'Won (verbal)' in Deal Stage of deal 48213377905",
            ),
            _row(
                "d2",
                "deals",
                "48213377906",
                "Associated Company IDs",
                "20488734571",
                "reference to company 20488734571 not loaded",
            ),
        ],
    )
    assert by_key["48213377905"]["offending_value"] == "Won (verbal)"
    assert "deal 48213377905" in by_key["48213377905"]["reason"]
    assert by_key["48213377906"]["offending_value"] == "20488734571"
    assert "company 20488734571" in by_key["48213377906"]["reason"]


def test_personal_data_is_removed(engine: sa.Engine) -> None:
    by_key = _export(
        engine,
        [
            _row("p1", "contacts", "101", "Email", "ann@example.com", "invalid email 'ann@example.com'"),
            _row("p2", "contacts", "102", "Last Name", "Smithers", "value 'Smithers' longer than 3"),
            _row("p3", "res.partner", "7", "street", "12 Elm Road", "street '12 Elm Road' rejected"),
            _row(
                "p4",
                "contacts",
                "104",
                "Lifecycle Stage",
                "call +44 20 7946 0958",
                "unknown value 'call +44 20 7946 0958'; mail bob@example.org",
            ),
        ],
    )
    text = repr(by_key)
    for personal in ("ann@example.com", "Smithers", "12 Elm Road", "7946 0958", "bob@example.org"):
        assert personal not in text, personal
    assert by_key["101"]["offending_value"] == export.WITHHELD
    assert by_key["102"]["reason"] == f"value '{export.WITHHELD}' longer than 3"
    assert by_key["104"]["offending_value"] == "call [REDACTED:phone]"
    assert {"101", "102", "7", "104"} <= set(by_key)  # the keys themselves are kept
