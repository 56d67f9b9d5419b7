"""Outbound contracts: rendering canonical values into a target payload, and refusing before any call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integration_assets.contracts.outbound import (
    OutboundContractError,
    load_outbound_contract,
    outbound_contracts,
)
from integration_assets.contracts.spec import all_contracts, contracts_for, known_entities
from integration_assets.mapping.outbound import OutboundContractViolation, render
from integration_assets.policies import load_policies

NAMES = (
    "odoo/partner",
    "odoo/sale_order",
    "odoo/sale_order_line",
    "odoo/picking_tracking",
    "easypost/shipment",
    "hubspot/deal_writeback",
    "hubspot/shipment_status",
)


def order(**over: Any) -> dict[str, Any]:
    canonical: dict[str, Any] = {
        "partner_id": 7,
        "client_order_ref": "hubspot-deal:123",
        "origin": "HubSpot deal 123",
        "deal_id": "123",
        "deal_name": "Deal 123",
        "currency": "USD",
        "user_id": None,
        "lines": [
            {"product_id": 11, "quantity": 2, "price_unit": "19.50", "name": "Widget", "sku": "W-1"},
            {"product_id": "12", "quantity": 1.0, "price_unit": 5, "name": "Gadget", "sku": "G-1"},
        ],
    }
    canonical.update(over)
    return canonical


def shipment(**to: Any) -> dict[str, Any]:
    policy = load_policies().outbound
    address = {
        "name": "ACME Corp",
        "street1": "1 Main St",
        "city": "Springfield",
        "zip": "62701",
        "country": "us",
    }
    address.update(to)
    return {
        "to_address": address,
        "from_address": policy.from_address.model_dump(exclude_none=True),
        "parcel": policy.parcel.model_dump(),
        "reference": "hubspot-deal:123",
        "options": {},
    }


def test_every_shipped_contract_loads_and_the_inbound_loader_skips_them() -> None:
    assert {c.id for c in outbound_contracts()} == {f"{n}@v1" for n in NAMES}
    # The outbound folder sits beside the source systems but is none of them.
    assert all(c.system != "outbound" for c in all_contracts())
    assert all(system != "outbound" for system, _, _ in known_entities())
    assert contracts_for("outbound", "odoo") == []


def test_sale_order_renders_lines_as_odoo_create_commands() -> None:
    payload = render("odoo/sale_order", order())
    assert payload.contract == "odoo/sale_order@v1" and payload.parts == ("odoo/sale_order_line@v1",)
    assert payload.values == {
        "partner_id": 7,
        "client_order_ref": "hubspot-deal:123",
        "origin": "HubSpot deal 123",
        # user_id None is left out, never sent as a value that would clear the salesperson
        "order_line": [
            [0, 0, {"product_id": 11, "product_uom_qty": 2.0, "price_unit": 19.5, "name": "Widget"}],
            [0, 0, {"product_id": 12, "product_uom_qty": 1.0, "price_unit": 5.0, "name": "Gadget"}],
        ],
    }
    assert render("odoo/sale_order", order(user_id=4)).values["user_id"] == 4


def test_partner_shipment_and_hubspot_payloads() -> None:
    partner = render("odoo/partner", {"name": "ACME", "ref": "hubspot-company:9", "domain": "acme.example"})
    assert partner.values == {
        "name": "ACME",
        "ref": "hubspot-company:9",
        "is_company": True,
        "website": "https://acme.example",
    }
    ship = render("easypost/shipment", shipment(zip=62701))
    assert ship.values["to_address"] == {
        "name": "ACME Corp",
        "street1": "1 Main St",
        "city": "Springfield",
        "zip": "62701",
        "country": "US",
    }
    assert ship.values["from_address"]["zip"] == "94104" and ship.values["parcel"]["weight"] == 16.0
    assert ship.values["reference"] == "hubspot-deal:123" and "options" not in ship.values
    assert render("odoo/picking_tracking", {"tracking_code": " EZ100 "}).values == {
        "carrier_tracking_ref": "EZ100"
    }
    writeback = render(
        "hubspot/deal_writeback",
        {"deal_id": "123", "order_name": "S00042", "tracking_code": 9400100, "label_url": "https://l/1.png"},
    )
    assert writeback.values == {
        "odoo_order_name": "S00042",
        "tracking_number": "9400100",  # HubSpot property values are strings
        "shipment_status": "pre_transit",  # the default before any carrier scan
        "label_url": "https://l/1.png",
    }
    status = render(
        "hubspot/shipment_status",
        {"shipment_status": "delivered", "shipment_status_at": "2026-01-02T03:04:05Z"},
    )
    assert status.values == {
        "shipment_status": "delivered",
        "shipment_status_updated_at": "2026-01-02T03:04:05Z",
    }


@pytest.mark.parametrize(
    ("name", "canonical", "field", "reason"),
    [
        ("odoo/sale_order", order(client_order_ref=""), "client_order_ref", "required by odoo sale.order"),
        ("odoo/sale_order", order(lines=[]), "order_line", "missing or empty"),
        ("odoo/sale_order", order(partner_id=None), "partner_id", "canonical 'partner_id'"),
        (
            "odoo/sale_order",
            order(lines=[{"product_id": None, "quantity": 1, "price_unit": 1, "name": "x"}]),
            "order_line[0].product_id",
            "required by odoo sale.order.line",
        ),
        (
            "odoo/sale_order",
            order(lines=[{"product_id": 1, "quantity": 0, "price_unit": 1, "name": "x"}]),
            "order_line[0].product_uom_qty",
            "greater than 0",
        ),
        (
            "odoo/sale_order",
            order(lines=[{"product_id": 1, "quantity": "two", "price_unit": 1, "name": "x"}]),
            "order_line[0].product_uom_qty",
            "not a number",
        ),
        ("odoo/sale_order", order(partner_id="7.5"), "partner_id", "not a whole number"),
        (
            "easypost/shipment",
            shipment(street1="  "),
            "to_address.street1",
            "required by easypost POST /v2/shipments",
        ),
        (
            "hubspot/deal_writeback",
            {"order_name": "S1", "label_url": "u"},
            "tracking_number",
            "tracking_code",
        ),
        (
            "hubspot/shipment_status",
            {"shipment_status": "lost_in_space"},
            "shipment_status",
            "not in the contract's map",
        ),
    ],
)
def test_violations_name_the_field_before_any_call(
    name: str, canonical: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(OutboundContractViolation) as err:
        render(name, canonical)
    assert err.value.field == field
    assert reason in err.value.reason
    assert field in str(err.value)


def test_line_violation_names_the_line_contract() -> None:
    bad = order(lines=[{"product_id": 1, "quantity": -1, "price_unit": 1, "name": "x"}])
    with pytest.raises(OutboundContractViolation) as err:
        render("odoo/sale_order", bad)
    assert err.value.contract == "odoo/sale_order_line@v1"


V2 = """\
version: 2
target: {system: odoo, model: sale.order}
fields:
  partner_id: {from: partner_id, as: integer}
  client_order_ref: {from: client_order_ref}
  order_line: {from: lines, each: odoo/sale_order_line, command: create}
  x_delivery_window: {from: delivery_window, default: standard}
  note: {value: Created from HubSpot}
required: [partner_id, client_order_ref, order_line, x_delivery_window]
"""


def test_a_new_version_is_picked_over_the_old_one(contracts_dir: Path) -> None:
    (contracts_dir / "outbound" / "odoo" / "sale_order.v2.yaml").write_text(V2)
    payload = render("odoo/sale_order", order())
    assert payload.contract == "odoo/sale_order@v2"
    assert (
        payload.values["x_delivery_window"] == "standard" and payload.values["note"] == "Created from HubSpot"
    )
    assert "origin" not in payload.values
    # A pinned version still renders the old shape (a replay of a v1 dead letter may ask for it).
    assert render("odoo/sale_order", order(), version=1).contract == "odoo/sale_order@v1"
    assert load_outbound_contract("odoo/sale_order@v1").version == 1
    with pytest.raises(OutboundContractError, match="no version 3"):
        load_outbound_contract("odoo/sale_order", 3)


def test_a_target_requiring_a_new_field_is_fixed_by_a_contract_version(contracts_dir: Path) -> None:
    (contracts_dir / "outbound" / "odoo" / "sale_order.v2.yaml").write_text(
        V2.replace(", default: standard", "")
    )
    with pytest.raises(OutboundContractViolation) as err:
        render("odoo/sale_order", order())
    assert (err.value.contract, err.value.field) == ("odoo/sale_order@v2", "x_delivery_window")
    assert render("odoo/sale_order", order(delivery_window="am")).values["x_delivery_window"] == "am"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (V2.replace("version: 2", "version: 3"), "does not match the file name"),
        (
            V2.replace("  note: {value: Created from HubSpot}\n", "  note: {value: x, from: y}\n"),
            "exactly one of",
        ),
        (V2.replace("x_delivery_window]", "x_delivery_window, company_id]"), "company_id"),
        (V2.replace("system: odoo", "system: hubspot"), "must live under outbound/hubspot/"),
        (V2.replace("model: sale.order", "model: sale.order, endpoint: /x"), "exactly one of model"),
        (V2.replace("each: odoo/sale_order_line", "each: sale_order_line"), "not a contract name"),
        (V2.replace("as: integer", "as: int"), "as"),
        (V2.replace("  note:", "  note: {value: 1}\n  note:"), "duplicate key"),
        (V2.replace("default: standard}", "default: standard, mapp: {}}"), "mapp"),
    ],
)
def test_invalid_contracts_are_refused_at_load(contracts_dir: Path, text: str, message: str) -> None:
    assert text != V2
    (contracts_dir / "outbound" / "odoo" / "sale_order.v2.yaml").write_text(text)
    with pytest.raises(OutboundContractError, match=message) as err:
        outbound_contracts()
    assert "sale_order.v2.yaml" in str(err.value)


def test_unknown_contract_is_a_clear_error() -> None:
    with pytest.raises(OutboundContractError, match="no outbound contract 'odoo/invoice'"):
        render("odoo/invoice", {})
    with pytest.raises(OutboundContractError, match="not an outbound contract name"):
        render("sale_order", {})
