"""Acceptance: the business cases of the chain, each on SQLite with the SQL queue (the dialects and queues are
proven by test_chain_happy and test_chain_faults): a dry run sends nothing; won → reopened → won makes one
order (or a second, by policy); an amount change never makes a second order; an order cancelled before its
label gets none, after it is refunded or held; duplicate and out-of-order won events; a rejected address and
bad deals are dead-lettered with the problem named; tracking updates never set an older status."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.outbound.relay import relay
from integration_assets.sandbox.events import hubspot_change, tracker_event
from integration_assets.warehouse.schema import outbox
from tests.outbound.chain_world import FORWARD, SKUS, ChainWorld, Crash, chain_world, crash_once

pytestmark = pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)

WRITES = {"create", "write", "action_confirm", "action_assign", "action_cancel", "unlink"}


def odoo_writes(world: ChainWorld) -> list[str]:
    out = []
    for r in world.odoo.requests:
        args = ((r.body or {}).get("params") or {}).get("args") or []
        if len(args) >= 5 and args[4] in WRITES:
            out.append(f"{args[3]}.{args[4]}")
    return out


def outbox_keys(world: ChainWorld, topic: str) -> list[str]:
    with world.engine.connect() as conn:
        return sorted(conn.scalars(sa.select(outbox.c.key).where(outbox.c.topic == topic)))


def hs_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# -- dry run ---------------------------------------------------------------------------------------------------
def test_dry_run_previews_every_payload_and_sends_nothing(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deals = [world.add_deal(i).deal_id for i in range(2)]
        world.pull_and_ingest()
        relay(engine)
        dry = world.drain(dry_run=True)
        previews = dry["odoo_order"].previews
        assert {p["chain_id"] for p in previews} == set(deals)
        for p in previews:
            [payload] = p["payloads"]
            assert payload["call"] == "sale.order.create" and payload["contract"] == "odoo/sale_order@v1"
            assert payload["values"]["client_order_ref"] == f"hubspot-deal:{p['chain_id']}"
            assert payload["values"]["order_line"][0][:2] == [0, 0]
        assert odoo_writes(world) == [] and world.odoo.orders() == []
        assert world.ledger() == {} and world.chains() == {}

        # The orders for real; then a dry run of the label step shows the shipment and buys nothing.
        world.drain(steps=["odoo_order"])
        relay(engine)
        dry = world.drain(steps=["easypost_label"], dry_run=True)
        [payload] = dry["easypost_label"].previews[0]["payloads"]
        assert payload["values"]["reference"].startswith("hubspot-deal:")
        assert payload["values"]["to_address"]["street1"] and payload["values"]["parcel"]["weight"] > 0
        assert [r.path for r in world.easypost.requests if r.method == "POST"] == []
        assert world.easypost.labels_bought() == 0

        # Nothing was consumed: the real run completes every chain.
        world.drain()
        assert world.easypost.labels_bought() == 2 and set(world.deal_patches()) == set(deals)


# -- won, reopened, won again ----------------------------------------------------------------------------------
@pytest.mark.parametrize("rewin", ["ignore", "new_order"])
def test_won_reopened_won_again(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rewin: str
) -> None:
    with chain_world(engine, tmp_path, monkeypatch, rewin=rewin) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        world.drain()
        for stage in ("contractsent", "closedwon"):
            world.set_stage(deal, stage)
            world.pull_and_ingest(("deals",))
        world.drain()
        if rewin == "ignore":
            assert world.odoo_orders() == {f"hubspot-deal:{deal}": 1}
            assert outbox_keys(world, "deal.won") == [f"deal.won:{deal}"]
            assert world.easypost.labels_bought() == 1
        else:
            assert world.odoo_orders() == {f"hubspot-deal:{deal}": 1, f"hubspot-deal:{deal}:2": 1}
            assert outbox_keys(world, "deal.won") == [f"deal.won:{deal}", f"deal.won:{deal}:2"]
            assert world.easypost.labels_bought(f"hubspot-deal:{deal}:2") == 1
            chain = world.chains()[deal]
            assert (chain["generation"], chain["status"]) == (2, "written_back")
            assert chain["order_id"] == str(world.odoo_order(deal, 2)["id"])
        assert world.easypost.duplicates() == {}


# -- amount change ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["flag", "update"])
def test_amount_change_never_makes_a_second_order(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    with chain_world(engine, tmp_path, monkeypatch, amount_change=policy) as world:
        d = world.add_deal(1, lines=[(SKUS[0], 2, "10.00"), (SKUS[1], 1, "5.00")])
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        order = world.odoo_order(d.deal_id)
        assert Decimal(str(order["amount_untaxed"])) == Decimal("25")
        # The customer takes 5 of the first item and drops the second: line items and amount change.
        first, second = world.hubspot.deal_line_item_ids[d.deal_id]
        world.hubspot.touch("line_items", [first], quantity="5", amount="50.00")
        world.hubspot.touch("line_items", [second], quantity="0", amount="0.00")
        world.hubspot.deal_line_item_ids[d.deal_id] = [first]
        world.set_stage(d.deal_id, "closedwon", amount="50.00")
        world.pull_and_ingest(("deals",))
        assert outbox_keys(world, "deal.changed") == [f"deal.changed:{d.deal_id}:50.00"]
        world.drain()

        assert world.odoo_orders() == {f"hubspot-deal:{d.deal_id}": 1}
        order = world.odoo_order(d.deal_id)
        letters = world.dead_letters()
        if policy == "flag":
            assert Decimal(str(order["amount_untaxed"])) == Decimal("25")
            [dl] = letters
            assert (dl["check_name"], dl["natural_key"]) == ("amount_changed", d.deal_id)
            assert "25.0000" in dl["reason"] and "50.00" in dl["reason"]
        else:
            assert letters == []
            assert Decimal(str(order["amount_untaxed"])) == Decimal("50")
            assert Decimal(str(world.chains()[d.deal_id]["amount_at_order"])) == Decimal("50")
        # The label follows either way: one, for the one order.
        assert world.easypost.labels_bought(f"hubspot-deal:{d.deal_id}") == 1


# -- cancellation ----------------------------------------------------------------------------------------------
def test_order_cancelled_before_its_label_gets_none(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deals = [world.add_deal(i).deal_id for i in range(2)]
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        for d in deals:
            world.odoo.cancel_order(world.odoo_order(d)["id"])
        world.pull_odoo_orders()  # the merge of the cancelled orders captures order.cancelled
        assert outbox_keys(world, "order.cancelled") == sorted(f"order.cancelled:{d}:1" for d in deals)
        world.drain(steps=[*FORWARD, "compensate"])
        assert world.easypost.shipments_created == 0 and world.easypost.labels_bought() == 0
        assert {d: c["status"] for d, c in world.chains().items()} == dict.fromkeys(deals, "cancelled")
        assert world.deal_patches() == {}
        assert world.dead_letters() == []


def test_label_step_reads_the_order_live_and_skips_a_cancelled_one(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled in Odoo, not yet pulled into the warehouse: the label step's live read catches it."""
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        world.odoo.cancel_order(world.odoo_order(deal)["id"])
        reports = world.drain()
        assert reports["easypost_label"].skipped == 1
        assert world.easypost.shipments_created == 0
        assert world.chains()[deal]["status"] == "cancelled"


def test_label_bought_by_an_attempt_that_died_is_refunded_when_the_order_is_cancelled(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The label step buys the label and dies before its ledger commit; the order is cancelled meanwhile. The
    retry finds the bought label by its reference and records it, and compensation refunds it."""
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        relay(engine)
        fired: list[str] = []
        with pytest.raises(Crash):
            world.run_step_once(
                "easypost_label", hook=crash_once("after_call", fired), transactional_ack=False,
                visibility_timeout_s=0.3,
            )  # fmt: skip
        assert world.easypost.labels_bought() == 1 and world.chains()[deal]["shipment_id"] is None
        world.odoo.cancel_order(world.odoo_order(deal)["id"])
        world.pull_odoo_orders()
        time.sleep(0.35)  # the dead consumer's lease runs out
        world.drain(steps=["easypost_label", "compensate"])
        chain = world.chains()[deal]
        assert chain["status"] == "refunded"
        assert dict(world.easypost.refunds) == {chain["shipment_id"]: 1}
        assert world.easypost.labels_bought() == 1 and world.dead_letters() == []


@pytest.mark.parametrize("policy", ["refund", "review"])
def test_order_cancelled_after_its_label(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    with chain_world(engine, tmp_path, monkeypatch, cancel_after_label=policy) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        world.drain()
        chain = world.chains()[deal]
        world.odoo.cancel_order(int(chain["order_id"]))
        world.pull_odoo_orders()
        world.pull_odoo_orders()  # pulled twice: still one compensation
        world.drain(steps=["compensate"])
        chain = world.chains()[deal]
        if policy == "refund":
            assert dict(world.easypost.refunds) == {chain["shipment_id"]: 1}
            assert chain["status"] == "refunded"
            assert world.dead_letters() == []
        else:
            assert dict(world.easypost.refunds) == {}
            assert chain["status"] == "review"
            [dl] = world.dead_letters()
            assert (dl["check_name"], dl["entity"], dl["natural_key"]) == ("needs_review", "compensate", deal)
            assert chain["shipment_id"] in dl["reason"]


# -- duplicate and out-of-order won events ---------------------------------------------------------------------
def test_duplicate_and_out_of_order_won_events(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same won deal arrives three times and an older, not-yet-won version of it arrives after the won one
    (with ``rewin: new_order``, where a reopening would start a second chain): one chain, one order."""
    with chain_world(engine, tmp_path, monkeypatch, rewin="new_order") as world:
        d = world.add_deal(1)
        won_at = datetime.now(UTC).replace(microsecond=0)
        world.hubspot.touch("deals", [d.deal_id], at=won_at)
        world.pull_and_ingest()
        world.hubspot.touch("deals", [d.deal_id], at=won_at + timedelta(seconds=1))  # a re-delivery
        world.pull_and_ingest(("deals",))
        world.pull_and_ingest(("deals",))  # the same content again: a duplicate file
        older = {
            "id": d.deal_id,
            "properties": {
                "dealname": "Deal 0001",
                "dealstage": "contractsent",
                "pipeline": "default",
                "amount": d.amount,
                "hs_lastmodifieddate": hs_time(won_at - timedelta(hours=1)),
                "createdate": hs_time(won_at - timedelta(days=1)),
            },
            "associations": {"companies": {"results": [{"id": d.company_id, "type": "deal_to_company"}]}},
            "archived": False,
        }
        world.land_deals([older], "late-older-version")
        world.drain()
        assert outbox_keys(world, "deal.won") == [f"deal.won:{d.deal_id}"]
        assert outbox_keys(world, "deal.reopened") == []
        assert world.odoo_orders() == {f"hubspot-deal:{d.deal_id}": 1}
        assert world.easypost.labels_bought() == 1


def test_won_by_webhook_duplicate_and_out_of_order(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deal is won through HubSpot ``deal.propertyChange`` webhooks: the won change delivered twice, and an
    older change back to an open stage delivered after it (stale, not a reopening): one chain, one order."""
    with chain_world(engine, tmp_path, monkeypatch, rewin="new_order") as world:
        d = world.add_deal(1, stage="contractsent")
        world.pull_and_ingest()
        t0 = datetime.now(UTC) + timedelta(minutes=1)  # after the pulled version
        won = hubspot_change(
            501, d.deal_id, "dealstage", "closedwon", t0 + timedelta(seconds=30), "deal.propertyChange"
        )
        older = hubspot_change(500, d.deal_id, "dealstage", "contractsent", t0, "deal.propertyChange")
        world.deliver_events("hubspot", [[won]])
        world.deliver_events("hubspot", [[won], [older]])
        world.drain()
        assert outbox_keys(world, "deal.won") == [f"deal.won:{d.deal_id}"]
        assert outbox_keys(world, "deal.reopened") == []
        assert world.odoo_orders() == {f"hubspot-deal:{d.deal_id}": 1}
        assert world.chains()[d.deal_id]["status"] == "written_back"


# -- permanent problems, named ---------------------------------------------------------------------------------
def test_rejected_address_is_dead_lettered_naming_the_address(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        good = world.add_deal(1).deal_id
        bad = world.add_deal(2, zip_code="00000").deal_id
        world.easypost.reject_address("00000")
        world.pull_and_ingest()
        reports = world.drain()
        assert reports["easypost_label"].retried == 0
        [dl] = world.dead_letters()
        assert (dl["entity"], dl["natural_key"], dl["check_name"]) == (
            "easypost_label",
            bad,
            "target_rejected",
        )
        assert "ADDRESS.VERIFY.FAILURE" in dl["reason"] and dl["column_name"]
        assert dl["contract_version"] == "easypost/shipment@v1"
        assert world.easypost.shipments_created == 1  # the good one only
        assert world.chains()[good]["status"] == "written_back"
        assert world.chains()[bad]["status"] == "dead_lettered"


def test_bad_deals_are_dead_lettered_with_the_item_named(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        good = world.add_deal(1).deal_id
        no_lines = world.add_deal(2, lines=[]).deal_id
        unknown = world.add_deal(3, lines=[(SKUS[0], 1, "5.00"), ("SKU-9999", 1, "7.00")]).deal_id
        zero = world.add_deal(4, lines=[(SKUS[1], 0, "5.00")]).deal_id
        negative = world.add_deal(5, lines=[(SKUS[1], -2, "5.00")]).deal_id
        world.hubspot.touch("deals", [negative], amount="10.00")  # the deal itself is fine; its line is not
        euro = world.add_deal(6, currency="EUR").deal_id
        no_company = world.hubspot.add_deal(
            {"dealname": "Orphan"}, items=[{"sku": SKUS[0], "name": "x", "quantity": 1, "price": "1.00"}]
        )
        world.pull_and_ingest()
        world.drain()
        letters = {dl["natural_key"]: dl for dl in world.dead_letters()}
        assert set(letters) == {no_lines, unknown, zero, negative, euro, no_company}
        assert {dl["check_name"] for dl in letters.values()} == {"bad_input"}
        assert "no line items" in letters[no_lines]["reason"]
        assert "SKU-9999" in letters[unknown]["reason"] and letters[unknown]["column_name"] == "hs_sku"
        for d in (zero, negative):
            assert "quantity" in letters[d]["reason"] and "must be positive" in letters[d]["reason"]
            assert "line item" in letters[d]["reason"]
        assert "EUR" in letters[euro]["reason"] and letters[euro]["column_name"] == "currency"
        assert "no company" in letters[no_company]["reason"]
        assert world.odoo_orders() == {f"hubspot-deal:{good}": 1}
        assert world.chains()[good]["status"] == "written_back"


# -- tracking updates ------------------------------------------------------------------------------------------
def test_tracking_updates_never_set_an_older_status(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        world.drain()
        chain = world.chains()[deal]
        code, shipment = chain["tracking_code"], chain["shipment_id"]
        t0 = datetime.now(UTC).replace(microsecond=0)

        def event(n: int, status: str, previous: str | None) -> dict[str, object]:
            return tracker_event(
                f"evt_{deal}_{n}", f"trk_{deal}", code, status, previous, t0 + timedelta(minutes=n), t0,
                shipment=shipment,
            )  # fmt: skip

        world.deliver_events("easypost", [event(2, "in_transit", "pre_transit")])
        world.drain(steps=["hubspot_tracking"])
        assert world.deal_property(deal, "shipment_status") == "in_transit"
        world.deliver_events("easypost", [event(3, "delivered", "in_transit")])
        world.deliver_events("easypost", [event(1, "pre_transit", None)])  # late and older: stale
        world.drain(steps=["hubspot_tracking"])
        assert world.deal_property(deal, "shipment_status") == "delivered"
        chain = world.chains()[deal]
        assert chain["shipment_status"] == "delivered"
        statuses = [u["properties"].get("shipment_status") for u in world.hubspot.deal_updates]
        assert statuses[-2:] == ["in_transit", "delivered"]
        assert "pre_transit" not in statuses[1:]
