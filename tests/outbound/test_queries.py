"""The outbound read side (integration_assets/outbound/queries.py) on chains seeded as runs leave them, on
SQLite and PostgreSQL: reconciliation fails on a duplicate order and on a missing label and passes on clean
chains; stuck chains by policy; the backlog per step; one chain traced across systems."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from integration_assets.outbound import queries
from integration_assets.outbound.relay import relay
from integration_assets.outbound.runner import STEP_ORDER
from integration_assets.policies import OutboundPolicy
from integration_assets.quality.outcome import utcnow
from tests.support import outbound as seed
from tests.support.outbound import NOW

POLICY = OutboundPolicy()  # stuck: order_after 2h, label_after 4h


def test_clean_chains_reconcile(engine: sa.Engine) -> None:
    for deal in ("101", "102", "103"):
        seed.chain(engine, deal, won_at=NOW - timedelta(days=1))
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert rec.passed, rec.as_dict()
    assert (rec.won_deals, rec.deals_with_one_order, rec.shippable_orders, rec.orders_with_one_label) == (
        3,
        3,
        3,
        3,
    )
    assert rec.warehouse_orders_pulled


def test_duplicate_order_fails_with_both_ids(engine: sa.Engine) -> None:
    seed.chain(engine, "201", won_at=NOW - timedelta(days=1), order_id="1201")
    seed.chain(engine, "202", won_at=NOW - timedelta(days=1))
    seed.order(
        engine, "1999", "201"
    )  # a second order for the same deal, e.g. a lost response retried blindly
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert not rec.passed
    assert [(m.kind, m.deal_id, m.order_ids) for m in rec.mismatches] == [
        ("deal_with_duplicate_orders", "201", ("1201", "1999"))
    ]
    assert rec.deals_with_one_order == 1


def test_cancelled_extra_order_is_not_a_duplicate(engine: sa.Engine) -> None:
    seed.chain(engine, "211", won_at=NOW - timedelta(days=1), order_id="1211")
    seed.order(engine, "1998", "211", state="cancel")  # the runbook's fix: cancel the extra order
    assert queries.reconcile(engine, POLICY, now=NOW).passed


def test_missing_label_fails_after_grace_only(engine: sa.Engine) -> None:
    seed.chain(engine, "301", won_at=NOW - timedelta(hours=5), upto="order")
    seed.chain(engine, "302", won_at=NOW - timedelta(minutes=30), upto="order")  # still within label_after
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert [(m.kind, m.deal_id, m.order_ids) for m in rec.mismatches] == [
        ("order_without_label", "301", ("1301",))
    ]
    assert rec.in_flight == 1


def test_label_held_in_dead_letters_is_missing_at_once(engine: sa.Engine) -> None:
    seed.chain(engine, "311", won_at=NOW - timedelta(minutes=5), upto="order", status="dead_lettered")
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert [m.kind for m in rec.mismatches] == ["order_without_label"]


def test_cancelled_order_needs_no_label(engine: sa.Engine) -> None:
    seed.chain(engine, "321", won_at=NOW - timedelta(days=1), upto="order", status="cancelled", pulled=False)
    seed.order(engine, "1321", "321", state="cancel")
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert rec.passed, rec.as_dict()
    assert rec.shippable_orders == 0


def test_duplicate_label_fails(engine: sa.Engine) -> None:
    seed.chain(engine, "331", won_at=NOW - timedelta(days=1))
    with engine.begin() as conn:  # the chain points at another shipment than its ledger row
        conn.execute(sa.text("UPDATE outbound_chains SET shipment_id = 'shp_other' WHERE chain_id = '331'"))
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert [(m.kind, m.shipment_ids) for m in rec.mismatches] == [
        ("order_with_duplicate_labels", ("shp_331", "shp_other"))
    ]


def test_missing_order_and_chainless_won_deal(engine: sa.Engine) -> None:
    seed.chain(engine, "401", won_at=NOW - timedelta(days=2), upto=None)  # won, never ordered
    seed.chain(engine, "402", won_at=NOW - timedelta(minutes=10), upto=None)  # in flight
    seed.won_deal(engine, "403", at=NOW - timedelta(days=1))  # won after the first chain, no chain at all
    seed.won_deal(engine, "404", at=NOW - timedelta(days=30))  # won before outbound began: out of scope
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert sorted((m.kind, m.deal_id) for m in rec.mismatches) == [
        ("deal_without_order", "401"),
        ("deal_without_order", "403"),
    ]
    assert rec.in_flight == 1


def test_unpulled_order_counts_from_the_ledger(engine: sa.Engine) -> None:
    seed.chain(engine, "501", won_at=NOW - timedelta(days=1), pulled=False)
    rec = queries.reconcile(engine, POLICY, now=NOW)
    assert rec.passed and not rec.warehouse_orders_pulled


def test_stuck_chains_by_policy(engine: sa.Engine) -> None:
    seed.chain(engine, "601", won_at=NOW - timedelta(hours=3), upto=None)  # no order after 2h
    seed.chain(engine, "602", won_at=NOW - timedelta(hours=1), upto=None)  # not yet
    seed.chain(engine, "603", won_at=NOW - timedelta(hours=5), upto="order")  # no label after 4h
    seed.chain(engine, "604", won_at=NOW - timedelta(hours=5), upto="order", status="cancelled")
    seed.chain(engine, "605", won_at=NOW - timedelta(hours=5))  # complete
    seed.outbound_dead_letter(engine, "603", "easypost_label")
    stuck = queries.stuck_chains(engine, POLICY, NOW)
    assert [(s.chain_id, s.reason, s.dead_letters) for s in stuck] == [
        ("601", "no_order", 0),
        ("603", "no_label", 1),
    ]
    assert stuck[1].order_id == "1603"
    assert timedelta(seconds=stuck[0].age_s) == timedelta(hours=3)


def test_label_waits_for_payment_when_required(engine: sa.Engine) -> None:
    policy = OutboundPolicy(require_payment=True)
    seed.chain(engine, "701", won_at=NOW - timedelta(hours=6), upto="order")  # unpaid: waiting is policy
    seed.chain(engine, "702", won_at=NOW - timedelta(hours=6), upto="order")
    seed.canonical(
        engine,
        "payments",
        "stripe",
        source_id="pi_702",
        order_id="1702",
        status="succeeded",
        created_at=NOW - timedelta(hours=5),
    )
    assert [(s.chain_id, s.reason) for s in queries.stuck_chains(engine, policy, NOW)] == [
        ("702", "no_label")
    ]
    rec = queries.reconcile(engine, policy, now=NOW)
    assert [(m.kind, m.deal_id) for m in rec.mismatches] == [("order_without_label", "702")]


def test_backlog_counts_outbox_and_queue_per_step(engine: sa.Engine) -> None:
    seed.outbox_rows(
        engine,
        ("order.confirmed:801", "easypost_label", "801"),
        ("order.confirmed:802", "easypost_label", "802"),
    )
    relay(engine)  # on the label step's queue now
    seed.outbox_rows(
        engine,
        ("deal.won:803", "odoo_order", "803"),
        ("deal.won:804", "odoo_order", "804"),
        ("label.bought:805", "hubspot_writeback", "805"),
    )
    later = utcnow() + timedelta(minutes=20)
    rows = {b.step: b for b in queries.backlog(engine, now=later)}
    assert list(rows) == list(queries.STEPS) == list(STEP_ORDER)
    assert (rows["odoo_order"].outbox_unsent, rows["odoo_order"].queue_depth) == (2, 0)
    assert 20 * 60 <= (rows["odoo_order"].oldest_age_s or 0) < 25 * 60
    assert (rows["easypost_label"].outbox_unsent, rows["easypost_label"].queue_depth) == (0, 2)
    assert rows["easypost_label"].pending == 2 and rows["easypost_label"].queue_oldest_age_s is not None
    assert rows["hubspot_writeback"].pending == 1
    assert rows["compensate"].pending == 0 and rows["compensate"].oldest_age_s is None
    assert not any(r.queue_error for r in rows.values())


def test_trace_shows_the_whole_chain(engine: sa.Engine) -> None:
    c = seed.chain(engine, "901", won_at=NOW - timedelta(hours=2))
    seed.outbox_rows(engine, ("deal.won:901", "odoo_order", "901"))
    seed.tracking_event(engine, "EZ901", "in_transit", at=NOW - timedelta(minutes=30))
    seed.chain(engine, "902", won_at=NOW - timedelta(hours=2))  # another chain: not in the trace
    t = queries.trace(engine, "901")
    assert t.found and t.deal and t.deal["is_closed_won"]
    assert t.chain and t.chain["status"] == "written_back"
    assert [s.step for s in t.steps] == ["odoo_order", "easypost_label", "hubspot_writeback", "odoo_tracking"]
    assert t.steps[0].attempts == 2 and t.steps[0].target_id == c.order_id and t.steps[0].latency_ms == 120
    assert [o["order_id"] for o in t.orders] == [c.order_id]
    assert t.picking_ids == [int(c.order_id or 0) + 5000]
    assert t.shipment and t.shipment["tracking_code"] == "EZ901"
    assert [e["status"] for e in t.tracking_events] == ["in_transit"]
    assert [m["key"] for m in t.outbox] == ["deal.won:901"]
    assert t.as_dict()["steps"][0]["first_attempt_at"].startswith("2026-12-03T")


def test_trace_lists_the_chains_dead_letters(engine: sa.Engine) -> None:
    seed.chain(engine, "911", won_at=NOW - timedelta(hours=5), upto="order", status="dead_lettered")
    seed.outbound_dead_letter(engine, "911", "easypost_label")
    t = queries.trace(engine, "911")
    assert [(d["step"], d["check_name"], d["column_name"]) for d in t.dead_letters] == [
        ("easypost_label", "target_rejected", "street1")
    ]
    assert t.shipment is None and t.tracking_events == []


def test_trace_of_an_unknown_deal(engine: sa.Engine) -> None:
    assert not queries.trace(engine, "nope").found
