"""The hourly quality_checks run evaluates what changed since the last evaluation (plus the time-dependent
checks), and every check once a day."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from integration_assets.checks.scope import ALWAYS, check_inputs, due_checks
from integration_assets.definitions import defs
from tests.checks.support import drop, ingest

CONTACTS = dg.AssetKey(["warehouse", "contacts"])
COMPANIES = dg.AssetKey(["warehouse", "companies"])


def _inputs(asset: dg.AssetKey) -> dict[dg.AssetCheckKey, tuple[dg.AssetKey, ...]]:
    return {k: v for k, v in check_inputs(defs.asset_checks or []).items() if k.asset_key == asset}


def test_inputs_name_the_additional_dependencies() -> None:
    inputs = check_inputs(defs.asset_checks or [])
    lines = dg.AssetCheckKey(dg.AssetKey(["warehouse", "sales_order_lines"]), "referential_integrity")
    assert dg.AssetKey(["warehouse", "sales_orders"]) in inputs[lines]
    reconcile = dg.AssetCheckKey(dg.AssetKey(["warehouse", "sales_orders"]), "reconcile_deals_orders")
    assert inputs[reconcile][0] == dg.AssetKey(["warehouse", "sales_orders"])


def test_only_what_changed_since_the_last_evaluation_is_due() -> None:
    inputs = _inputs(CONTACTS)
    names = {k.name for k in inputs}
    with dg.instance_for_test() as instance:
        assert set(due_checks(instance, inputs)) == set(inputs)  # never evaluated
        assert ingest(defs, instance, [drop()]).success  # the load evaluates every check of contacts
        assert {k.name for k in due_checks(instance, inputs)} == names & ALWAYS
        # A materialization that carried no evaluations (e.g. reported from outside a run) makes them due.
        instance.report_runless_asset_event(dg.AssetMaterialization(CONTACTS))
        assert {k.name for k in due_checks(instance, inputs)} == names
        # A check's additional dependency counts like its asset.
        key = dg.AssetCheckKey(CONTACTS, "keys")
        assert due_checks(instance, {key: (CONTACTS, COMPANIES)}) == [key]


def test_the_schedule_requests_the_due_checks_and_everything_once_a_day() -> None:
    schedule = defs.resolve_schedule_def("quality_checks_schedule")
    inputs = check_inputs(defs.asset_checks or [])
    with dg.instance_for_test() as instance:
        assert ingest(defs, instance, [drop()]).success
        hourly = schedule.evaluate_tick(
            dg.build_schedule_context(
                instance=instance, scheduled_execution_time=datetime(2026, 12, 3, 14, 17, tzinfo=UTC)
            )
        )
        nightly = schedule.evaluate_tick(
            dg.build_schedule_context(
                instance=instance, scheduled_execution_time=datetime(2026, 12, 3, 3, 17, tzinfo=UTC)
            )
        )
    [run] = hourly.run_requests or []
    requested = set(run.asset_check_keys or [])
    contacts = {k for k in requested if k.asset_key == CONTACTS}
    assert {k.name for k in contacts} == {k.name for k in _inputs(CONTACTS)} & ALWAYS
    assert dg.AssetCheckKey(dg.AssetKey(["warehouse", "deals"]), "gx_suite") in requested  # never evaluated
    [full] = nightly.run_requests or []
    assert set(full.asset_check_keys or []) == set(inputs)
    assert full.tags["integration/quality_scope"] == "full"
