"""The outbound checks through Dagster (the real code location, a real instance and warehouse): the
reconciliation fails on a seeded duplicate order and on a seeded missing label and passes on clean chains,
stuck chains fail with the policy's severity, and a failure reaches the alert channel through
asset_check_alerts with the runbook from policies.yaml. The backlog's tiers as plain Python."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.outbound import health
from integration_assets.outbound.queries import StepBacklog
from integration_assets.policies import load_policies
from integration_assets.quality.outcome import utcnow
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import reconciliation_mismatches
from tests.checks.support import run_checks
from tests.support import outbound as seed

SALE_ORDERS = dg.AssetKey(["outbound", "odoo", "sale_orders"])
LABELS = dg.AssetKey(["outbound", "easypost", "labels"])
RECONCILIATION = dg.AssetCheckKey(LABELS, "outbound_reconciliation")
STUCK = dg.AssetCheckKey(SALE_ORDERS, "outbound_stuck_chains")
BACKLOG = dg.AssetCheckKey(SALE_ORDERS, "outbound_backlog")


@pytest.fixture
def defs() -> dg.Definitions:
    from integration_assets.definitions import defs

    return defs


def _evaluate(
    defs: dg.Definitions, instance: dg.DagsterInstance, key: dg.AssetCheckKey
) -> dg.AssetCheckEvaluation:
    [evaluation] = run_checks(defs, instance, [key]).get_asset_check_evaluations()
    return evaluation


def _meta(e: dg.AssetCheckEvaluation, name: str) -> object:
    v = e.metadata[name]
    return getattr(v, "value", v)


def test_reconciliation_fails_on_a_duplicate_order_and_a_missing_label(
    engine: sa.Engine, defs: dg.Definitions
) -> None:
    now = utcnow()
    seed.chain(engine, "11", won_at=now - timedelta(days=1))  # clean
    seed.chain(engine, "12", won_at=now - timedelta(days=1), order_id="1012")
    seed.order(engine, "1099", "12")  # a second live order for deal 12
    seed.chain(engine, "13", won_at=now - timedelta(hours=6), upto="order")  # confirmed 6 h ago, no label
    with dg.instance_for_test() as instance:
        e = _evaluate(defs, instance, RECONCILIATION)
    assert not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    assert _meta(e, "by_kind") == {"deal_with_duplicate_orders": 1, "order_without_label": 1}
    listed = _meta(e, "listed")
    assert isinstance(listed, list)
    assert {(m["kind"], m["deal_id"], tuple(m["order_ids"])) for m in listed} == {
        ("deal_with_duplicate_orders", "12", ("1012", "1099")),
        ("order_without_label", "13", ("1013",)),
    }
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(reconciliation_mismatches.c.key, reconciliation_mismatches.c.side).where(
                reconciliation_mismatches.c.check_name == "outbound_reconciliation"
            )
        ).all()
    assert sorted(rows) == [("12", "odoo"), ("13", "easypost")]


def test_reconciliation_passes_on_clean_chains(engine: sa.Engine, defs: dg.Definitions) -> None:
    now = utcnow()
    for deal in ("21", "22"):
        seed.chain(engine, deal, won_at=now - timedelta(days=1))
    with dg.instance_for_test() as instance:
        e = _evaluate(defs, instance, RECONCILIATION)
    assert e.passed, e.description
    assert (_meta(e, "deals_with_one_order"), _meta(e, "orders_with_one_label")) == (2, 2)


def test_stuck_chains_fail_and_alert_with_the_runbook(engine: sa.Engine, defs: dg.Definitions) -> None:
    now = utcnow()
    seed.chain(engine, "31", won_at=now - timedelta(hours=3), upto=None)  # won 3 h ago, no order
    with dg.instance_for_test() as instance:
        e = _evaluate(defs, instance, STUCK)
        assert not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
        assert _meta(e, "without_order") == 1
        defs.resolve_sensor_def("asset_check_alerts")(dg.build_sensor_context(instance=instance))
    path = get_settings().data_dir / "alerts.jsonl"
    [fired] = [json.loads(line) for line in path.read_text().splitlines()]
    assert (fired["kind"], fired["key"], fired["severity"]) == (
        "fire",
        "check:outbound/odoo/sale_orders:outbound_stuck_chains",
        "error",
    )
    assert fired["runbook"] == load_policies().check("outbound_stuck_chains").runbook
    assert "31" in fired["summary"]


def test_backlog_check_passes_when_idle(engine: sa.Engine, defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        e = _evaluate(defs, instance, BACKLOG)
    assert e.passed and _meta(e, "pending") == 0


def _rows(pending: int, oldest_s: float | None, error: str | None = None) -> list[StepBacklog]:
    return [
        StepBacklog("odoo_order", pending, oldest_s, 0, None),
        StepBacklog("easypost_label", 0, None, None if error else 0, None, error),
    ]


@pytest.mark.parametrize(
    ("pending", "oldest_s", "error", "passed", "severity"),
    [
        (5, 60.0, None, True, None),
        (101, 60.0, None, False, "WARN"),  # pending_warn 100
        (1001, 60.0, None, False, "ERROR"),  # pending_error 1000
        (5, 16 * 60.0, None, False, "WARN"),  # oldest_warn 15m
        (5, 2 * 3600.0, None, False, "ERROR"),  # oldest_error 1h
        (0, None, "QueueUnavailable: refused", False, "ERROR"),
    ],
)
def test_backlog_tiers(
    pending: int, oldest_s: float | None, error: str | None, passed: bool, severity: str | None
) -> None:
    out = health.backlog_outcome(_rows(pending, oldest_s, error), load_policies())
    assert out.passed is passed
    if severity:
        assert out.severity == severity
