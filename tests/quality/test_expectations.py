"""The Great Expectations suite on a canonical table, against SQLite and PostgreSQL through the warehouse URL."""

from __future__ import annotations

import json
from datetime import timedelta

from integration_assets.policies import load_policies
from integration_assets.quality.expectations import run_suite, suite_for
from tests.quality.factories import T0, Warehouse


def test_suite_takes_enum_vocabularies_from_the_contracts() -> None:
    by_column = {e.column: e for e in suite_for("invoices") if e.kind == "ExpectColumnValuesToBeInSet"}
    assert by_column["state"].kwargs["value_set"] == ["cancel", "draft", "posted"]
    assert by_column["source_system"].kwargs["value_set"] == ["odoo"]
    kinds = {e.kind for e in suite_for("invoices")}
    assert {"ExpectCompoundColumnsToBeUnique", "ExpectColumnPairValuesAToBeGreaterThanB"} <= kinds


def test_gx_suite_passes_and_fails(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    policies = load_policies()
    base = {
        "move_type": "out_invoice",
        "state": "posted",
        "customer_id": "7",
        "currency": "USD",
        "invoice_date": T0,
        "due_date": T0 + timedelta(days=30),
    }
    wh.rows(
        "invoices",
        {"source_id": "1", "amount_total": 10, **base},
        {"source_id": "2", "amount_total": 0, **base},
    )
    ok = run_suite(warehouse_url, "invoices", policies)
    assert ok.passed, ok.metadata
    assert ok.metadata["success_percent"] == 100

    wh.rows(
        "invoices",
        {
            "source_id": "3",
            **base,
            "state": "paid_by_magic",
            "amount_total": -5,
            "currency": "US",
            "due_date": T0 - timedelta(days=1),
        },
    )
    bad = run_suite(warehouse_url, "invoices", policies)
    assert not bad.passed and bad.severity == "WARN"
    failed = {(f["expectation"], f["column"]): f for f in bad.metadata["failed"]}
    assert set(failed) == {
        ("expect_column_values_to_be_in_set", "state"),
        ("expect_column_values_to_be_between", "amount_total"),
        ("expect_column_value_lengths_to_equal", "currency"),
        ("expect_column_pair_values_a_to_be_greater_than_b", None),
    }
    assert failed[("expect_column_values_to_be_in_set", "state")]["sample"] == ["paid_by_magic"]
    assert failed[("expect_column_values_to_be_between", "amount_total")]["unexpected_count"] == 1


def test_gx_never_lists_pii_values(warehouse_url: str) -> None:
    wh = Warehouse(warehouse_url)
    wh.rows(
        "customers", {"source_id": "1", "name": "Ann Lee", "email": "ann@example.com", "is_company": False}
    )
    wh.rows("customers", {"source_id": "1", "name": "Bo Li", "is_company": False, "source_system": "stripe"})
    out = run_suite(warehouse_url, "customers", load_policies())
    assert not out.passed  # source_system outside the vocabulary
    text = json.dumps(dict(out.metadata))
    assert "Ann Lee" not in text and "ann@example.com" not in text
