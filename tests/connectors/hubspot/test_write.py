"""HubSpot write side against the local fake over real HTTP: the deal PATCH, its validation errors, line items,
and the faults a write must survive (429 with Retry-After, 5xx, a slow answer, a write whose answer is lost)."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import httpx
import pytest

from integration_assets.connectors._retry import RequestRejected, RetriesExhausted
from integration_assets.connectors.hubspot import client as client_module
from integration_assets.connectors.hubspot.client import HubSpotClient
from integration_assets.connectors.hubspot.errors import HubSpotRejected, classify_hubspot_write
from integration_assets.errors import TerminalError, TransientError
from integration_assets.mapping.outbound import render
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from tests.connectors.conftest import FAST

ITEMS = [
    {"sku": "W-100", "name": "Widget", "quantity": 2, "price": "19.50"},
    {"sku": "G-200", "name": "Gadget", "quantity": 1, "price": "42.00", "currency": "EUR"},
]


def client(fake: FakeHubSpot, sleeps: list[float] | None = None, **kw: Any) -> HubSpotClient:
    kw.setdefault("retry", FAST)
    if sleeps is not None:
        kw["sleep"] = sleeps.append  # waits are recorded, not slept: the retry goes out at once
    return HubSpotClient(fake.token, fake.url, rng=random.Random(5), **kw)


def patches(fake: FakeHubSpot) -> list[Any]:
    return [r for r in fake.requests if r.method == "PATCH"]


def test_update_deal_writes_the_contract_payload(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal({"dealname": "Order me"}, items=ITEMS)
    payload = render(
        "hubspot/deal_writeback",
        {
            "deal_id": deal,
            "order_name": "S00042",
            "tracking_code": "9400100208303109505657",
            "label_url": "https://l/1",
        },
    )
    with client(hubspot) as c:
        answer = c.update_deal(deal, payload.values)
    assert answer["id"] == deal and answer["properties"]["odoo_order_name"] == "S00042"
    stored = hubspot.objects["deals"][deal]["properties"]
    assert (stored["tracking_number"], stored["shipment_status"], stored["label_url"]) == (
        "9400100208303109505657",
        "pre_transit",
        "https://l/1",
    )
    (req,) = patches(hubspot)
    assert req.path == f"/crm/v3/objects/deals/{deal}" and req.body == {"properties": payload.values}
    assert req.headers["Authorization"] == f"Bearer {hubspot.token}"
    assert [u["properties"] for u in hubspot.deal_updates] == [payload.values]


@pytest.mark.parametrize(
    ("properties", "field", "code"),
    [
        ({"tracking_number": "EZ1", "odoo_order_ref": "S1"}, "odoo_order_ref", "PROPERTY_DOESNT_EXIST"),
        ({"shipment_status": "lost_in_space"}, "shipment_status", "INVALID_OPTION"),
        ({"hs_object_id": "1"}, "hs_object_id", "READ_ONLY_VALUE"),
    ],
)
def test_a_refused_property_is_permanent_and_named(
    hubspot: FakeHubSpot, properties: dict[str, str], field: str, code: str
) -> None:
    deal = hubspot.add_deal()
    with client(hubspot) as c, pytest.raises(HubSpotRejected) as err:
        c.update_deal(deal, properties)
    assert isinstance(err.value, TerminalError) and isinstance(err.value, RequestRejected)
    assert (err.value.field, err.value.code, err.value.status) == (field, code, 400)
    assert field in str(err.value)
    assert len(patches(hubspot)) == 1  # never retried
    assert (
        hubspot.deal_updates == [] and "tracking_number" not in hubspot.objects["deals"][deal]["properties"]
    )


def test_a_newly_required_property_is_named_until_the_write_carries_it(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal()
    hubspot.require_property("delivery_window")
    with client(hubspot) as c:
        with pytest.raises(HubSpotRejected) as err:
            c.update_deal(deal, {"tracking_number": "EZ1"})
        assert (err.value.field, err.value.code) == ("delivery_window", "REQUIRED")
        c.update_deal(deal, {"tracking_number": "EZ1", "delivery_window": "am"})
    assert hubspot.objects["deals"][deal]["properties"]["delivery_window"] == "am"


def test_the_older_validation_body_names_the_property_from_its_message() -> None:
    # The changelog's example: the details only as the JSON list inside "message" (docs/SOURCES.md §1.4).
    embedded = [
        {"isValid": False, "message": "Enter only letters", "error": "INVALID_ALPHA", "name": "firstname"}
    ]
    body = {
        "status": "error",
        "message": f"Property values were not valid: {json.dumps(embedded)}",
        "correlationId": "11061cd3-cf3b-45f7-98d4-27f10a99ece6",
        "category": "VALIDATION_ERROR",
    }
    verdict = classify_hubspot_write(httpx.Response(400, json=body), 0.0)
    assert verdict.action == "terminal" and isinstance(verdict.error, HubSpotRejected)
    assert (verdict.error.field, verdict.error.code) == ("firstname", "INVALID_ALPHA")
    other = classify_hubspot_write(httpx.Response(400, json={"status": "error", "category": "OTHER"}), 0.0)
    assert other.action == "terminal" and not isinstance(other.error, HubSpotRejected)


def test_429_is_retried_after_retry_after(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal()
    hubspot.throttle_next(2, retry_after=3, method="PATCH")
    sleeps: list[float] = []
    with client(hubspot, sleeps) as c:
        c.update_deal(deal, {"tracking_number": "EZ1"})
    assert [r.status for r in patches(hubspot)] == [429, 429, 200]
    throttled = [r for r in patches(hubspot) if r.status == 429]
    assert all(r.not_before is not None for r in throttled)
    assert len(sleeps) == 2 and all(s >= 3 for s in sleeps)  # never earlier than Retry-After
    assert hubspot.objects["deals"][deal]["properties"]["tracking_number"] == "EZ1"


def test_5xx_is_retried_then_exhausted_without_writing(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal()
    hubspot.fail_next(2, status=502, method="PATCH")
    with client(hubspot, []) as c:
        c.update_deal(deal, {"tracking_number": "EZ1"})
    assert [r.status for r in patches(hubspot)] == [502, 502, 200]
    hubspot.clear_log()
    hubspot.set_down()
    with client(hubspot, []) as c, pytest.raises(RetriesExhausted) as err:
        c.update_deal(deal, {"tracking_number": "EZ2"})
    assert isinstance(err.value, TransientError) and err.value.last_status == 503
    assert len(patches(hubspot)) == FAST.max_attempts
    assert hubspot.objects["deals"][deal]["properties"]["tracking_number"] == "EZ1"
    hubspot.set_down(False)
    with client(hubspot, []) as c:
        c.update_deal(deal, {"tracking_number": "EZ2"})
    assert hubspot.objects["deals"][deal]["properties"]["tracking_number"] == "EZ2"


def test_a_lost_answer_after_the_write_is_retried_to_the_same_state(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal()
    hubspot.commit_then_drop(1)
    with client(hubspot, []) as c:
        c.update_deal(deal, {"tracking_number": "EZ1", "odoo_order_name": "S00007"})
    assert hubspot.dropped == [deal]
    assert [r.status for r in patches(hubspot)] == [None, 200]  # the first one never got an answer
    # The PATCH sets the same values twice: the deal is as if written once.
    assert [u["properties"] for u in hubspot.deal_updates] == [
        {"tracking_number": "EZ1", "odoo_order_name": "S00007"}
    ] * 2
    props = hubspot.objects["deals"][deal]["properties"]
    assert (props["tracking_number"], props["odoo_order_name"]) == ("EZ1", "S00007")


def test_a_slow_answer_times_out_and_is_retried(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal()
    hubspot.slow_next(1, delay=2.0, method="PATCH")
    with client(hubspot, [], timeout=httpx.Timeout(0.3)) as c:
        c.update_deal(deal, {"tracking_number": "EZ1"})
    assert len(patches(hubspot)) == 2
    assert hubspot.objects["deals"][deal]["properties"]["tracking_number"] == "EZ1"


def test_deal_line_items_in_association_order(hubspot: FakeHubSpot) -> None:
    deal = hubspot.add_deal(items=ITEMS)
    assert hubspot.objects["deals"][deal]["properties"]["amount"] == "81.00"
    with client(hubspot) as c:
        items = c.deal_line_items(deal)
    assert [(i["sku"], i["name"], i["quantity"], i["price"], i["currency"]) for i in items] == [
        ("W-100", "Widget", Decimal("2"), Decimal("19.50"), "USD"),
        ("G-200", "Gadget", Decimal("1"), Decimal("42.00"), "EUR"),
    ]
    assert items[0]["amount"] == Decimal("39.00") and items[0]["id"] == hubspot.deal_line_item_ids[deal][0]
    v4, read = [r for r in hubspot.requests if r.method in ("GET", "POST")]
    assert v4.path == f"/crm/v4/objects/deals/{deal}/associations/line_items"
    assert read.path == "/crm/v3/objects/line_items/batch/read"
    assert set(read.body["properties"]) >= {
        "hs_sku",
        "name",
        "quantity",
        "price",
        "hs_line_item_currency_code",
    }


def test_many_line_items_page_and_batch(hubspot: FakeHubSpot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "ASSOCIATIONS_PAGE_LIMIT", 50)
    deal = hubspot.add_deal(
        items=[{"sku": f"S-{i}", "name": f"n{i}", "quantity": 1, "price": "1"} for i in range(120)]
    )
    gone = hubspot.deal_line_item_ids[deal][7]
    hubspot.archive("line_items", [gone])  # deleted between the association list and the read
    with client(hubspot) as c:
        items = c.deal_line_items(deal)
    assert [i["sku"] for i in items] == [f"S-{i}" for i in range(120) if i != 7]
    v4 = [r for r in hubspot.requests if "/associations/" in r.path]
    reads = [r for r in hubspot.requests if r.path.endswith("/batch/read")]
    assert (len(v4), [len(r.body["inputs"]) for r in reads]) == (3, [100, 20])
    assert reads[0].status == 207


def test_no_line_items_and_get_deal(hubspot: FakeHubSpot) -> None:
    company = hubspot.add("companies", {"name": "ACME", "domain": "acme.example"})
    deal = hubspot.add_deal({"dealname": "Empty", "amount": "10.00"}, company=company)
    with client(hubspot) as c:
        assert c.deal_line_items(deal) == []
        got = c.get_deal(deal, ["dealstage", "amount"], associations=["companies"])
        assert got["properties"]["dealstage"] == "closedwon" and got["properties"]["amount"] == "10.00"
        assert got["associations"]["companies"]["results"][0]["id"] == company
        assert c.associated_ids("deals", deal, "companies") == [company]
        with pytest.raises(RequestRejected, match="404"):
            c.get_deal("999999", ["amount"])
    assert not any(r.path.endswith("/batch/read") for r in hubspot.requests)


def test_seeded_deals_carry_line_items_and_from_settings(
    hubspot: FakeHubSpot, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubspot.seed(companies=2, contacts=0, deals=3, line_items=2)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot.token)
    monkeypatch.setenv("HUBSPOT_BASE_URL", hubspot.url)
    deals = sorted(hubspot.objects["deals"])
    with HubSpotClient.from_settings(retry=FAST) as c:
        counts = [len(c.deal_line_items(d)) for d in deals]
    assert counts == [2, 2, 2]
