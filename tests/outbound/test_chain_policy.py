"""Acceptance of the chain's policy choices and of the partner it creates: the label waits for the order's
Stripe payment (require_payment) and goes once the payment event is merged; the rate is the named carrier and
service; no rate at all is a dead letter; a company with no Odoo partner gets one, once, even when Odoo's
answer to the create is lost. SQLite with the SQL queue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.sandbox.events import payment_intent, stripe_event
from tests.outbound.chain_world import chain_world

pytestmark = pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)


def test_label_waits_for_the_payment_then_goes(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch, require_payment=True) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        reports = world.drain()
        assert reports["easypost_label"].waiting == 1
        assert world.easypost.shipments_created == 0
        chain = world.chains()[deal]
        assert chain["status"] == "ordered"

        created = int(time.time())
        pi = payment_intent(
            "pi_chain_1", 4500, "usd", "succeeded", created,
            customer="cus_1", charge="ch_1", metadata={"order_id": str(chain["order_id"])},
        )  # fmt: skip
        world.deliver_events(
            "stripe", [stripe_event("evt_pi_chain_1", "payment_intent.succeeded", pi, created)]
        )
        world.drain()
        assert world.easypost.labels_bought(f"hubspot-deal:{deal}") == 1
        assert world.chains()[deal]["status"] == "written_back"
        assert world.dead_letters() == []


def test_named_rate_is_bought(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = {"choose": "named", "carrier": "UPS", "service": "Ground"}
    with chain_world(engine, tmp_path, monkeypatch, rate=rate) as world:
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        world.drain()
        [shipment] = world.easypost.shipments_with_reference(f"hubspot-deal:{deal}")
        assert (shipment["selected_rate"]["carrier"], shipment["selected_rate"]["service"]) == (
            "UPS",
            "Ground",
        )
        cheapest = min(float(r["rate"]) for r in shipment["rates"])
        assert float(shipment["selected_rate"]["rate"]) > cheapest  # not the cheapest: the named one


def test_sku_map_names_the_odoo_product(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HubSpot's SKU differs from Odoo's default_code: the policy's sku_map translates it."""
    with chain_world(engine, tmp_path, monkeypatch, sku_map={"HS-DESK": "SKU-0002"}) as world:
        deal = world.add_deal(1, lines=[("HS-DESK", 2, "30.00")]).deal_id
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        order = world.odoo_order(deal)
        [line] = [world.odoo.models["sale.order.line"][i] for i in order["order_line"]]
        assert (line["product_id"][0], line["product_uom_qty"]) == (world.products["SKU-0002"], 2)


def test_no_rates_is_dead_lettered(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deal = world.add_deal(1).deal_id
        world.easypost.no_rates()
        world.pull_and_ingest()
        reports = world.drain()
        assert reports["easypost_label"].retried == 0
        [dl] = world.dead_letters()
        assert (dl["entity"], dl["natural_key"], dl["column_name"]) == ("easypost_label", deal, "rates")
        assert "no rate" in dl["reason"]
        assert world.easypost.labels_bought() == 0


def test_new_partner_is_created_once_even_when_the_answer_is_lost(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stored link and no partner with the company's domain: the step creates one with ref
    ``hubspot-company:<id>``; the create's answer is lost, the retry finds it by that ref. A second deal of
    the same company uses it too. (The new partner has no street address, so its label is held, naming it.)"""
    with chain_world(engine, tmp_path, monkeypatch) as world:
        d = world.add_deal(7, link="new")
        world.odoo.commit_then_drop("create", "res.partner")
        world.pull_and_ingest()
        reports = world.drain(steps=["odoo_order"])
        assert reports["odoo_order"].retried >= 1
        partners = [
            p
            for p in world.odoo.models["res.partner"].values()
            if p["ref"] == f"hubspot-company:{d.company_id}"
        ]
        assert len(partners) == 1
        partner = partners[0]
        assert (partner["name"], partner["website"], partner["is_company"]) == (
            "Company 0007 Ltd",
            "https://company0007.example.com",
            True,
        )
        assert world.odoo_order(d.deal_id)["partner_id"][0] == partner["id"]

        second = world.hubspot.add_deal(
            {"dealname": "Second"}, company=d.company_id,
            items=[{"sku": "SKU-0001", "name": "x", "quantity": 1, "price": "3.00"}],
        )  # fmt: skip
        world.pull_and_ingest(("deals",))
        world.drain()
        assert world.odoo_order(second)["partner_id"][0] == partner["id"]
        assert len([p for p in world.odoo.models["res.partner"].values() if p["ref"]]) == 1
        letters = {dl["natural_key"]: dl for dl in world.dead_letters()}
        assert set(letters) == {d.deal_id, second}
        assert {(dl["entity"], dl["check_name"]) for dl in letters.values()} == {
            ("easypost_label", "contract")
        }
        assert "to_address.street1" in letters[second]["reason"]
