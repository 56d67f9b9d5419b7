"""Column drift of a file against a contract (integration_assets.contracts.matching); which version a file
matches is tested through loads in tests/ingest."""

from __future__ import annotations

from integration_assets.contracts.matching import column_drift
from tests.mapping.test_engine import TS, make_contract


def test_column_drift() -> None:
    c = make_contract(
        "contacts",
        {
            "fn": {"to": "first_name"},
            "associations.companies.results": {"to": "company_id", "type": "association"},
        },
        ignored=["owner"],
    )
    missing_required, missing_optional, new = column_drift(
        c,
        ["id", "fn", "owner", "associations.companies.results", "associations.companies.paging", "Shoe size"],
    )
    assert missing_required == [TS]
    assert missing_optional == []
    assert new == ["associations.companies.paging", "Shoe size"] or new == ["Shoe size"]
