"""Each quality check's pass and fail case, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.contracts.spec import CONTRACTS_DIR, clear_cache
from integration_assets.policies import Policies, load_policies
from integration_assets.quality import integrity, ledger_checks, reconciliation
from integration_assets.warehouse.schema import reconciliation_mismatches
from tests.quality.factories import T0, Warehouse


@pytest.fixture
def wh(warehouse_url: str) -> Warehouse:
    return Warehouse(warehouse_url)


@pytest.fixture
def policies() -> Policies:
    return load_policies()


def _run(wh: Warehouse, fn, *args, **kwargs):
    with wh.engine.begin() as conn:
        return fn(conn, *args, **kwargs)


# -- volume -------------------------------------------------------------------------------------------------


def test_volume_passes_within_history_and_without_enough_history(wh: Warehouse, policies: Policies) -> None:
    assert _run(wh, ledger_checks.volume, "contacts", policies).passed  # no loads yet
    wh.load("contacts", 100)
    first = _run(wh, ledger_checks.volume, "contacts", policies)
    assert first.passed and "earlier load" in first.description
    for n in (100, 110, 90):
        wh.load("contacts", n)
    out = _run(wh, ledger_checks.volume, "contacts", policies)
    assert out.passed, out.description
    assert out.metadata["median_rows"] == 100 and out.metadata["history_loads"] == 3


def test_volume_zero_rows_is_an_error_and_says_nothing_was_deleted(wh: Warehouse, policies: Policies) -> None:
    for n in (100, 100, 100):
        wh.load("contacts", n)
    wh.load("contacts", 0, status="rejected", error="no_data_rows: the file has no data records")
    out = _run(wh, ledger_checks.volume, "contacts", policies)
    assert not out.passed and out.severity == "ERROR"
    assert "zero rows" in out.description and "never deletes" in out.description


@pytest.mark.parametrize(("latest", "word"), [(10, "median"), (1000, "x the median")])
def test_volume_drop_or_spike_warns(wh: Warehouse, policies: Policies, latest: int, word: str) -> None:
    for n in (100, 100, 100):
        wh.load("contacts", n)
    wh.load("contacts", latest)
    out = _run(wh, ledger_checks.volume, "contacts", policies)
    assert not out.passed and out.severity == "WARN" and word in out.description
    assert out.metadata["latest_rows"] == latest


# -- quarantine rate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quarantined", "passed", "severity"), [(1, True, None), (5, False, "WARN"), (30, False, "ERROR")]
)
def test_quarantine_rate_thresholds(
    wh: Warehouse, policies: Policies, quarantined: int, passed: bool, severity: str | None
) -> None:
    load_id = wh.load("contacts", 100, quarantined=quarantined)
    for _ in range(quarantined):
        wh.dead_letter("contacts", first_seen=T0, load_id=load_id)
    out = _run(wh, ledger_checks.quarantine_rate, "contacts", policies)
    assert out.passed is passed
    if severity:
        assert out.severity == severity
    assert out.metadata["rows_quarantined"] == quarantined
    assert out.metadata["top_reasons"] == [
        {"check": "unknown_value", "column": "Lifecycle Stage", "rows": quarantined}
    ]


# -- dead-letter backlog ------------------------------------------------------------------------------------


def test_dead_letter_backlog(wh: Warehouse, policies: Policies) -> None:
    now = T0 + timedelta(days=10)
    assert _run(wh, ledger_checks.dead_letter_backlog, "contacts", policies, now=now).passed
    wh.dead_letter("contacts", first_seen=now - timedelta(hours=5))
    wh.dead_letter("contacts", first_seen=now - timedelta(days=1), status="replayed")
    fresh = _run(
        wh, ledger_checks.dead_letter_backlog, "contacts", policies, now=now, since=now - timedelta(hours=6)
    )
    assert fresh.passed and fresh.metadata["pending"] == 1 and fresh.metadata["new_since_last_check"] == 1

    wh.dead_letter("contacts", first_seen=now - timedelta(days=3))
    warn = _run(
        wh, ledger_checks.dead_letter_backlog, "contacts", policies, now=now, since=now - timedelta(hours=1)
    )
    assert not warn.passed and warn.severity == "WARN"
    assert warn.metadata["pending"] == 2 and warn.metadata["new_since_last_check"] == 0
    assert warn.metadata["oldest_pending_age_hours"] == 72

    wh.dead_letter("contacts", first_seen=now - timedelta(days=8))
    error = _run(wh, ledger_checks.dead_letter_backlog, "contacts", policies, now=now)
    assert not error.passed and error.severity == "ERROR"


# -- drift --------------------------------------------------------------------------------------------------


@pytest.fixture
def editable_contracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "contracts"
    for p in CONTRACTS_DIR.glob("*/*.v*.yaml"):
        (root / p.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / p.parent.name / p.name)
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))
    clear_cache()
    yield root
    clear_cache()


def test_drift_fails_on_unknown_value_and_passes_once_the_contract_knows_it(
    wh: Warehouse, policies: Policies, editable_contracts: Path
) -> None:
    assert _run(wh, ledger_checks.drift, "contacts", policies).passed
    wh.drift("contacts", "hubspot.contacts.csv@v1", "unknown_value", "Lifecycle Stage", ["Champion"], rows=3)
    wh.drift("contacts", "hubspot.contacts.csv@v1", "new_column", "Favourite Colour", [])
    out = _run(wh, ledger_checks.drift, "contacts", policies)
    assert not out.passed and out.severity == "WARN"
    kinds = {(f["kind"], f["column"]) for f in out.metadata["findings"]}
    assert kinds == {("unknown_value", "Lifecycle Stage"), ("new_column", "Favourite Colour")}

    # The user adds the value and ignores the column: the same findings no longer count.
    path = editable_contracts / "hubspot" / "contacts_export.v1.yaml"
    text = path.read_text()
    text = text.replace("      Other: other\n", "      Other: other\n      Champion: other\n", 1)
    text = text.replace("ignored: [", "ignored: [Favourite Colour, ", 1)
    path.write_text(text)
    clear_cache()
    after = _run(wh, ledger_checks.drift, "contacts", policies)
    assert after.passed, after.description
    assert after.metadata["resolved_by_contract_edit"] == 2


def test_drift_of_an_older_contract_version_does_not_count(wh: Warehouse, policies: Policies) -> None:
    wh.drift("deals", "hubspot.deals.csv@v1", "unknown_value", "Deal Stage", ["Parked"])
    assert _run(wh, ledger_checks.drift, "deals", policies).passed
    wh.drift("deals", "hubspot.deals.csv@v2", "type_change", "Amount", ["ten"])
    out = _run(wh, ledger_checks.drift, "deals", policies)
    assert not out.passed and out.metadata["contracts"] == ["hubspot.deals.api@v1", "hubspot.deals.csv@v2"]


# -- integrity ----------------------------------------------------------------------------------------------


def _order(i: str, **kw) -> dict:
    return {"source_id": i, "name": f"S{i}", "customer_id": "c1", "state": "sale", **kw}


def test_keys_pass_and_fail(wh: Warehouse, policies: Policies) -> None:
    wh.rows("sales_orders", _order("1"), _order("2"))
    ok = _run(wh, integrity.keys, "sales_orders", policies)
    assert ok.passed and ok.severity == "ERROR" and ok.metadata["rows"] == 2

    wh.rows("sales_orders", _order("3", name="S1"), _order("4", customer_id=None), _order("5", name=" "))
    bad = _run(wh, integrity.keys, "sales_orders", policies)
    assert not bad.passed and bad.severity == "ERROR"
    assert bad.metadata["missing_values"] == {"name": 1, "customer_id": 1}
    assert bad.metadata["duplicates"]["name"] == {
        "groups": 1,
        "sample": [{"source_system": "odoo", "rows": 2, "key": {"name": "S1"}}],
    }


def test_keys_never_show_a_pii_key_value(wh: Warehouse, policies: Policies) -> None:
    wh.rows(
        "contacts",
        {"source_id": "1", "email": "ann@example.com"},
        {"source_id": "2", "email": "ann@example.com"},
    )
    out = _run(wh, integrity.keys, "contacts", policies)
    assert not out.passed
    assert "ann@example.com" not in json.dumps(dict(out.metadata)) + out.description
    assert sorted(out.metadata["duplicates"]["email"]["sample"][0]["source_ids"]) == ["1", "2"]


def test_a_key_is_unique_per_source_system(wh: Warehouse, policies: Policies) -> None:
    """The same e-mail under two systems (or as a prefix of another value) is no duplicate; the same
    e-mail twice in one system is, among many unique ones."""
    wh.rows("contacts", *({"source_id": str(i), "email": f"c{i}@example.com"} for i in range(1, 301)))
    wh.rows(
        "contacts",
        {"source_id": "x1", "source_system": "odoo", "email": "c1@example.com"},
        {"source_id": "90002", "email": "c1@example.co"},
        {"source_id": "90003", "email": None},
        {"source_id": "90004", "email": None},
    )
    assert _run(wh, integrity.keys, "contacts", policies).passed
    wh.rows("contacts", {"source_id": "90005", "email": "c299@example.com"})
    out = _run(wh, integrity.keys, "contacts", policies)
    assert not out.passed and out.metadata["duplicates"]["email"]["groups"] == 1
    assert sorted(out.metadata["duplicates"]["email"]["sample"][0]["source_ids"]) == ["299", "90005"]


def test_referential_integrity(wh: Warehouse, policies: Policies) -> None:
    wh.rows("products", {"source_id": "p1", "name": "Chair"})
    wh.rows("sales_orders", _order("1"))
    wh.rows("sales_order_lines", {"source_id": "l1", "order_id": "1", "product_id": "p1"})
    assert _run(wh, integrity.referential, "sales_order_lines", policies).passed
    assert _run(wh, integrity.referential, "contacts", policies).passed  # nothing to check

    wh.rows("sales_order_lines", {"source_id": "l2", "order_id": "1", "product_id": "p9"})
    warn = _run(wh, integrity.referential, "sales_order_lines", policies)
    assert not warn.passed and warn.severity == "WARN"
    assert warn.metadata["sales_order_lines.product_id->products"]["sample"] == [
        {"source_system": "odoo", "source_id": "l2", "product_id": "p9"}
    ]

    wh.rows("sales_order_lines", {"source_id": "l3", "order_id": "9", "product_id": "p1"})
    error = _run(wh, integrity.referential, "sales_order_lines", policies)
    assert not error.passed and error.severity == "ERROR"
    assert error.metadata["sales_order_lines.order_id->sales_orders"]["orphans"] == 1


def test_referential_integrity_across_systems(wh: Warehouse, policies: Policies) -> None:
    from integration_assets.policies import IntegrityPolicy, Reference

    ref = Reference(table="sales_orders", column="client_order_ref", parent="deals", parent_system="hubspot")
    cross = policies.model_copy(update={"integrity": IntegrityPolicy(references=(ref,))})
    wh.rows("deals", {"source_id": "D1", "stage": "closedwon"})
    wh.rows("sales_orders", _order("1", client_order_ref="D1"))
    assert _run(wh, integrity.referential, "sales_orders", cross).passed
    wh.rows("sales_orders", _order("2", client_order_ref="D404"))
    out = _run(wh, integrity.referential, "sales_orders", cross)
    assert not out.passed and out.metadata[ref.name]["missing_parents"] == 1


# -- reconciliation -----------------------------------------------------------------------------------------


def _mismatches(wh: Warehouse, check: str) -> list[tuple[str, str]]:
    t = reconciliation_mismatches
    with wh.engine.connect() as conn:
        return sorted((r.key, r.side) for r in conn.execute(sa.select(t).where(t.c.check_name == check)))


def test_deals_vs_orders(wh: Warehouse, policies: Policies) -> None:
    wh.rows(
        "deals",
        {"source_id": "D1", "stage": "closedwon", "is_closed_won": True, "amount": 100},
        {"source_id": "D3", "stage": "negotiation", "is_closed_won": False},
    )
    wh.rows("sales_orders", _order("O1", client_order_ref="D1"), _order("O2", client_order_ref=None))
    ok = _run(wh, reconciliation.deals_orders, policies, run_id="r1")
    assert ok.passed, ok.description
    assert ok.metadata["confirmed_orders_without_reference"] == 1

    wh.rows("deals", {"source_id": "D2", "stage": "closedwon", "is_closed_won": True})
    wh.rows(
        "sales_orders",
        _order("O3", client_order_ref="D9"),
        _order("O4", client_order_ref="D3"),
        _order("O5", client_order_ref="D2", state="draft"),
    )
    bad = _run(wh, reconciliation.deals_orders, policies, run_id="r2")
    assert not bad.passed and bad.severity == "WARN"
    assert _mismatches(wh, "reconcile_deals_orders") == [("D2", "hubspot"), ("O3", "odoo"), ("O4", "odoo")]
    listed = {m["key"]: m for m in bad.metadata["listed"]}
    assert listed["D2"]["orders_in_other_states"] == [{"order_id": "O5", "state": "draft"}]
    assert "not closed-won" in listed["O4"]["reason"] and listed["O3"]["reason"] == "no such HubSpot deal"

    # Fixed in the source: the next evaluation replaces the rows.
    wh.execute("UPDATE sales_orders SET state = 'sale' WHERE source_id = 'O5'")
    wh.execute("DELETE FROM sales_orders WHERE source_id IN ('O3', 'O4')")
    assert _run(wh, reconciliation.deals_orders, policies).passed
    assert _mismatches(wh, "reconcile_deals_orders") == []


def test_customers_vs_companies(wh: Warehouse, policies: Policies) -> None:
    wh.rows(
        "customers",
        {"source_id": "7", "name": "Acme", "is_company": True},
        {"source_id": "8", "name": "Ann Lee", "is_company": False},
    )
    wh.rows(
        "companies",
        {"source_id": "h1", "name": "Acme", "odoo_partner_id": "7"},
        {"source_id": "h2", "name": "Prospect"},
    )
    ok = _run(wh, reconciliation.customers_companies, policies)
    assert ok.passed and ok.metadata["hubspot_companies_without_link"] == 1

    wh.rows("customers", {"source_id": "9", "name": "Globex", "is_company": True})
    wh.rows(
        "companies",
        {"source_id": "h3", "name": "Ann", "odoo_partner_id": "8"},
        {"source_id": "h4", "name": "Gone", "odoo_partner_id": "404"},
    )
    bad = _run(wh, reconciliation.customers_companies, policies, run_id="r")
    assert not bad.passed
    assert _mismatches(wh, "reconcile_customers_companies") == [
        ("9", "odoo"),
        ("h3", "hubspot"),
        ("h4", "hubspot"),
    ]
    reasons = {m["key"]: m["reason"] for m in bad.metadata["listed"]}
    assert "individual" in reasons["h3"] and "does not exist" in reasons["h4"]
    assert "Globex" not in json.dumps(dict(bad.metadata))  # names stay out


def test_reconciliations_leave_out_records_deleted_in_hubspot(wh: Warehouse, policies: Policies) -> None:
    """A deleted (archived) HubSpot company neither links an Odoo company nor needs a link; a deleted won deal
    no longer counts as won, so its confirmed order stands alone."""
    gone = {"archived_at": T0}
    wh.rows("customers", {"source_id": "7", "name": "Acme", "is_company": True})
    wh.rows(
        "companies",
        {"source_id": "h1", "name": "Acme", "odoo_partner_id": "7", **gone},
        {"source_id": "h2", "name": "Old", "odoo_partner_id": "404", **gone},
    )
    out = _run(wh, reconciliation.customers_companies, policies)
    assert _mismatches(wh, "reconcile_customers_companies") == [("7", "odoo")]
    assert out.metadata["hubspot_companies"] == 0

    wh.rows("deals", {"source_id": "D1", "stage": "closedwon", "is_closed_won": True, **gone})
    wh.rows("sales_orders", _order("O1", client_order_ref="D1"))
    out = _run(wh, reconciliation.deals_orders, policies)
    assert (
        _mismatches(wh, "reconcile_deals_orders") == [("O1", "odoo")]
        and out.metadata["closed_won_deals"] == 0
    )


def _payments_policy(policies: Policies, table: str) -> Policies:
    rec = policies.reconciliation
    ip = rec.invoices_payments.model_copy(update={"payments_table": table})
    return policies.model_copy(update={"reconciliation": rec.model_copy(update={"invoices_payments": ip})})


@pytest.fixture
def payments_table(wh: Warehouse) -> Iterator[sa.Table]:
    """A payments table shaped like Stripe's (minor units, lower-case currency, several object types)."""
    t = sa.Table(
        "test_payments",
        sa.MetaData(),
        sa.Column("source_id", sa.String(64), primary_key=True),
        sa.Column("object_type", sa.String(32)),
        sa.Column("amount", sa.BigInteger),
        sa.Column("currency", sa.String(3)),
        sa.Column("status", sa.String(16)),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )
    t.create(wh.engine)
    yield t
    t.drop(wh.engine)


def test_invoices_vs_payments_is_skipped_without_the_payments_table(
    wh: Warehouse, policies: Policies
) -> None:
    out = _run(wh, reconciliation.invoices_payments, _payments_policy(policies, "payments_absent"))
    assert out.skipped and not out.passed
    assert out.status == "skipped" and "payments_absent table not present yet" in out.description


def test_shipped_payments_settings_match_the_payments_table_when_it_exists(policies: Policies) -> None:
    from integration_assets.warehouse.schema import CANONICAL_TABLES

    assert "payments" in CANONICAL_TABLES
    pol = policies.reconciliation.invoices_payments
    wanted = {
        pol.amount_column,
        pol.currency_column,
        pol.status_column,
        pol.date_column,
        *pol.filters,
        *pol.refund_filters,
    }
    assert wanted <= set(CANONICAL_TABLES[pol.payments_table].c.keys())
    assert pol.refund_filters == {"object_type": ("refund",)} and pol.credit_move_types == ("out_refund",)


def test_invoices_vs_payments_per_day_and_currency(
    wh: Warehouse, policies: Policies, payments_table: sa.Table
) -> None:
    policies = _payments_policy(policies, "test_payments")
    now = T0 + timedelta(days=2)
    inv = {"move_type": "out_invoice", "state": "posted", "customer_id": "7"}
    wh.rows(
        "invoices",
        {"source_id": "i1", "invoice_date": T0, "amount_total": 100, "currency": "USD", **inv},
        {"source_id": "i2", "invoice_date": T0, "amount_total": 50, "currency": "USD", **inv},
        {
            "source_id": "i3",
            "invoice_date": T0,
            "amount_total": 70,
            "currency": "EUR",
            **(inv | {"state": "draft"}),
        },
        {"source_id": "i5", "invoice_date": T0, "amount_total": 1200, "currency": "JPY", **inv},
    )
    with wh.engine.begin() as conn:
        conn.execute(
            payments_table.insert(),
            [
                {
                    "source_id": "ch_1",
                    "object_type": "charge",
                    "amount": 15000,
                    "currency": "usd",
                    "status": "succeeded",
                    "created_at": T0,
                },
                {
                    "source_id": "pi_1",
                    "object_type": "payment_intent",
                    "amount": 15000,
                    "currency": "usd",
                    "status": "succeeded",
                    "created_at": T0,
                },  # the same payment as ch_1: counted once
                {
                    "source_id": "ch_2",
                    "object_type": "charge",
                    "amount": 9900,
                    "currency": "usd",
                    "status": "failed",
                    "created_at": T0,
                },
                {
                    "source_id": "ch_3",
                    "object_type": "charge",
                    "amount": 1200,
                    "currency": "jpy",
                    "status": "succeeded",
                    "created_at": T0,
                },
            ],
        )  # zero-decimal currency: 1200 yen, not 12
    ok = _run(wh, reconciliation.invoices_payments, policies, now=now)
    assert ok.passed, ok.metadata

    with wh.engine.begin() as conn:
        conn.execute(
            payments_table.insert(),
            [
                {
                    "source_id": "ch_4",
                    "object_type": "charge",
                    "amount": 2000,
                    "currency": "eur",
                    "status": "succeeded",
                    "created_at": T0 + timedelta(days=1),
                }
            ],
        )
    wh.rows("invoices", {"source_id": "i4", "invoice_date": T0, "amount_total": 10, "currency": "USD", **inv})
    bad = _run(wh, reconciliation.invoices_payments, policies, now=now, run_id="r")
    assert not bad.passed
    day0, day1 = T0.date().isoformat(), (T0 + timedelta(days=1)).date().isoformat()
    assert _mismatches(wh, "reconcile_invoices_payments") == [
        (f"{day0}/USD", "both"),
        (f"{day1}/EUR", "stripe"),
    ]
    usd = next(m for m in bad.metadata["listed"] if m["key"] == f"{day0}/USD")
    assert (usd["invoices_total"], usd["payments_total"], usd["difference"]) == ("160.00", "150.00", "10.00")


def test_invoices_vs_payments_nets_refunds_and_credit_notes(
    wh: Warehouse, policies: Policies, payments_table: sa.Table
) -> None:
    """A refunded payment and its posted credit note cancel out; a refund with no credit note is a mismatch
    of exactly the refunded amount (and a failed refund subtracts nothing)."""
    policies = _payments_policy(policies, "test_payments")
    now = T0 + timedelta(days=2)
    inv = {"state": "posted", "customer_id": "7", "currency": "USD", "invoice_date": T0}
    wh.rows(
        "invoices",
        {"source_id": "i1", "move_type": "out_invoice", "amount_total": 100, **inv},
        {"source_id": "r1", "move_type": "out_refund", "amount_total": 30, **inv},
    )  # Odoo: positive total
    pay = {"currency": "usd", "created_at": T0}
    with wh.engine.begin() as conn:
        conn.execute(
            payments_table.insert(),
            [
                {"source_id": "ch_1", "object_type": "charge", "amount": 10000, "status": "succeeded", **pay},
                {"source_id": "re_1", "object_type": "refund", "amount": 3000, "status": "succeeded", **pay},
                {"source_id": "re_2", "object_type": "refund", "amount": 5000, "status": "failed", **pay},
            ],
        )
    ok = _run(wh, reconciliation.invoices_payments, policies, now=now)
    assert ok.passed, ok.metadata
    assert (ok.metadata["refunds_subtracted"], ok.metadata["credit_notes_subtracted"]) == (1, 1)

    with wh.engine.begin() as conn:
        conn.execute(
            payments_table.insert(),
            [{"source_id": "re_3", "object_type": "refund", "amount": 1250, "status": "succeeded", **pay}],
        )
    bad = _run(wh, reconciliation.invoices_payments, policies, now=now)
    [usd] = bad.metadata["listed"]
    assert (usd["invoices_total"], usd["payments_total"], usd["difference"]) == ("70.00", "57.50", "12.50")
