"""Column drift of a file against a contract (integration_assets.contracts.matching), and what a rejection says;
which version a file matches is tested through loads in tests/ingest."""

from __future__ import annotations

import pytest

from integration_assets.contracts.matching import column_drift, match_contract
from integration_assets.contracts.records import FileRejected
from integration_assets.contracts.spec import all_contracts
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


def _columns(contract_id: str) -> list[str]:
    (c,) = [c for c in all_contracts() if c.id == contract_id]
    return list(c.fields)


def test_a_rejection_names_what_is_missing_and_guesses_no_folder_from_shared_columns() -> None:
    deals = [c for c in _columns("hubspot.deals.csv@v1") if c != "Deal Stage"]
    with pytest.raises(FileRejected) as exc:
        match_contract("hubspot", "deals", "csv", deals)
    assert exc.value.code == "missing_required_columns"
    assert exc.value.message.startswith("required column(s) missing for hubspot.deals.csv@v")
    assert "'Deal Stage'" in exc.value.message
    assert "wrong folder" not in exc.value.message


def test_a_file_that_fits_another_folder_is_told_so_after_what_is_missing() -> None:
    with pytest.raises(FileRejected) as exc:
        match_contract("hubspot", "deals", "csv", _columns("hubspot.contacts.csv@v1"))
    message = exc.value.message
    assert "'Deal Name'" in message and "'Deal Stage'" in message
    assert message.index("missing") < message.index("wrong folder (expected hubspot/contacts)")
