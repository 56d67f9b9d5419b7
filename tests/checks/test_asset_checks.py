"""The Dagster asset checks, run inside the real ingest jobs against SQLite and PostgreSQL warehouses."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from integration_assets.assets.files import raw_op_name
from integration_assets.definitions import defs
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import contacts, sales_orders
from tests.checks.support import check_key, drop, evaluations, ingest, run_checks
from tests.quality.factories import T0

CONTACT_CHECKS = {"volume", "quarantine_rate", "dead_letter_backlog", "drift", "keys", "gx_suite"}


def test_every_canonical_asset_has_its_checks_and_freshness() -> None:
    graph = defs.resolve_asset_graph()
    by_asset: dict[str, set[str]] = {}
    for key in graph.asset_check_keys:
        by_asset.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
    for table in (
        "contacts",
        "companies",
        "deals",
        "customers",
        "products",
        "sales_orders",
        "sales_order_lines",
        "invoices",
    ):
        assert CONTACT_CHECKS <= by_asset[f"warehouse/{table}"], table
    assert "referential_integrity" in by_asset["warehouse/sales_order_lines"]
    assert "reconcile_deals_orders" in by_asset["warehouse/sales_orders"]
    for key in graph.get_all_asset_keys():
        if key == dg.AssetKey(["events", "queue"]):
            continue  # observed, never materialized: freshness does not apply
        assert graph.get(key).freshness_policy is not None, key
    spec = graph.get_check_spec(check_key("sales_orders", "reconcile_deals_orders"))
    assert dg.AssetKey(["warehouse", "deals"]) in {d.asset_key for d in spec.additional_deps}
    assert graph.get_check_spec(check_key("sales_orders", "keys")).blocking


def test_ingest_job_runs_the_checks_with_their_metadata(warehouse_url: str) -> None:
    with dg.instance_for_test() as instance:
        result = ingest(defs, instance, [drop()])
        assert result.success
        ev = evaluations(result)
        # Every check of the asset, the whole-table suite included: the materialization carries them all.
        assert set(ev) == CONTACT_CHECKS
        assert ev["keys"].passed and ev["volume"].passed, {k: e.description for k, e in ev.items()}
        quality = defs.resolve_job_def("quality_checks").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert any(
        e.check_name == "gx_suite" and e.asset_key == dg.AssetKey(["warehouse", "contacts"]) and e.passed
        for e in quality.get_asset_check_evaluations()
    ), [(e.asset_key, e.check_name, e.passed) for e in quality.get_asset_check_evaluations()]
    # The fixture has an invalid e-mail and a lifecycle stage the contract does not know ("Prospect"):
    # 2 of 6 rows quarantined (over the 20 % error threshold) and the unknown value is drift.
    q = ev["quarantine_rate"]
    assert not q.passed and q.severity == dg.AssetCheckSeverity.ERROR
    assert q.metadata["rows_quarantined"].value == 2 and q.metadata["rows_read"].value == 6
    drift = ev["drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    [finding] = drift.metadata["findings"].value
    assert (finding["kind"], finding["column"], finding["sample"]) == (
        "unknown_value",
        "Lifecycle Stage",
        ["Prospect"],
    )
    backlog = ev["dead_letter_backlog"]
    assert backlog.passed and backlog.metadata["pending"].value == 2
    assert backlog.metadata["new_since_last_check"].value == 2
    assert "earlier load" in (ev["volume"].description or "")


def test_blocking_keys_check_fails_the_run(warehouse_url: str) -> None:
    # A contact already in the warehouse with an e-mail the export also uses under another id.
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(
            contacts.insert().values(
                source_system="hubspot",
                source_id="999",
                source_updated_at=T0,
                mapping_version="hubspot.contacts.csv@v1",
                load_id="ld_x",
                row_hash=1,
                email="ann.lee@example.com",
            )
        )
    with dg.instance_for_test() as instance:
        result = ingest(defs, instance, [drop()])
        keys = evaluations(result)["keys"]
    assert not result.success  # a blocking ERROR check fails its run
    assert not keys.passed and keys.severity == dg.AssetCheckSeverity.ERROR
    assert keys.metadata["duplicates"].value["email"]["groups"] == 1
    assert "ann.lee@example.com" not in str(keys.metadata)


def test_reconciliation_skip_is_reported_not_passed(warehouse_url: str) -> None:
    with dg.instance_for_test() as instance:
        result = run_checks(
            defs,
            instance,
            [
                check_key("invoices", "reconcile_invoices_payments"),
                check_key("sales_orders", "reconcile_deals_orders"),
            ],
        )
    ev = evaluations(result)
    skipped = ev["reconcile_invoices_payments"]
    assert result.success and not skipped.passed and skipped.severity == dg.AssetCheckSeverity.WARN
    # Until Stripe payments exist (no table yet, or no succeeded payment in it) the check says so.
    assert skipped.description.startswith("Not evaluated: ")
    assert skipped.metadata["status"].value == "skipped"
    assert ev["reconcile_deals_orders"].passed  # empty on both sides


@pytest.mark.usefixtures("warehouse_url")
def test_checks_on_an_empty_warehouse_never_crash() -> None:
    keys = [
        k
        for k in defs.resolve_asset_graph().asset_check_keys
        if k.asset_key == dg.AssetKey(["warehouse", "sales_order_lines"]) and k.name != "gx_suite"
    ]
    with dg.instance_for_test() as instance:
        result = run_checks(defs, instance, keys)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_blocking_check_on_orders_keeps_order_lines_from_loading_in_the_same_run(
    warehouse_url: str, tmp_path: Path
) -> None:
    # An order already in the warehouse carries the reference the new export uses for another order.
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(
            sales_orders.insert().values(
                source_system="odoo",
                source_id="900",
                source_updated_at=T0,
                mapping_version="odoo.sale.order.api@v1",
                load_id="ld_x",
                row_hash=1,
                name="S00001",
                customer_id="7",
                state="sale",
            )
        )
    orders = tmp_path / "orders.json"
    orders.write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "write_date": "2026-11-01 10:00:00",
                    "name": "S00001",
                    "partner_id": [7, "Acme"],
                    "date_order": "2026-11-01 09:00:00",
                    "amount_untaxed": 100.0,
                    "amount_tax": 0.0,
                    "amount_total": 100.0,
                    "currency_id": [1, "USD"],
                    "state": "sale",
                    "invoice_status": "to invoice",
                    "client_order_ref": False,
                }
            ]
        )
    )
    lines = tmp_path / "lines.json"
    lines.write_text(
        json.dumps(
            [
                {
                    "id": 11,
                    "write_date": "2026-11-01 10:00:00",
                    "order_id": [1, "S00001"],
                    "product_id": [5, "Chair"],
                    "name": "Chair",
                    "product_uom_qty": 1,
                    "qty_delivered": 0,
                    "qty_invoiced": 0,
                    "price_unit": 100.0,
                    "discount": 0,
                    "price_subtotal": 100.0,
                    "price_total": 100.0,
                }
            ]
        )
    )
    selection = [
        dg.AssetKey(k)
        for k in (
            ["raw", "odoo", "sale_order"],
            ["warehouse", "sales_orders"],
            ["raw", "odoo", "sale_order_line"],
            ["warehouse", "sales_order_lines"],
        )
    ]
    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=selection,
            raise_on_error=False,
            run_config={
                "ops": {
                    raw_op_name("odoo", "sale.order"): {"config": {"files": [str(orders)]}},
                    raw_op_name("odoo", "sale.order.line"): {"config": {"files": [str(lines)]}},
                }
            },
        )
    keys = {e.asset_check_key: e for e in result.get_asset_check_evaluations()}[
        check_key("sales_orders", "keys")
    ]
    assert not result.success and not keys.passed and keys.severity == dg.AssetCheckSeverity.ERROR
    assert result.asset_materializations_for_node("warehouse__sales_orders")  # written, then found wrong
    assert result.asset_materializations_for_node("raw__odoo__sale_order_line")  # not downstream of orders
    assert not result.asset_materializations_for_node("warehouse__sales_order_lines")  # skipped: blocked
