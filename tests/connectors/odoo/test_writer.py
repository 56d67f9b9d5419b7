"""OdooWriter against the fake Odoo over real HTTP: the outbound order chain, Odoo's errors, lost answers."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from integration_assets.connectors._retry import RetriesExhausted
from integration_assets.connectors.odoo.rpc import missing_field
from integration_assets.connectors.odoo.writer import (
    OdooBadIdentifier,
    OdooRpcError,
    OdooWriter,
    OdooWriteUnconfirmed,
)
from integration_assets.errors import TerminalError, TransientError
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from tests.connectors.odoo.conftest import Sleeps, execute_calls

REF = "hubspot-deal:9001"


def _partner(writer: OdooWriter, company: str = "42") -> int:
    return writer.create_partner(
        {
            "name": "Acme Inc",
            "ref": f"hubspot-company:{company}",
            "is_company": True,
            "website": "https://www.acme.com",
            "street": "1 Main St",
            "city": "Springfield",
            "zip": "62701",
            "country_id": 233,
        }
    )


def _found(record: dict | None) -> dict:
    assert record is not None
    return record


def _order_values(partner: int, products: dict[str, int], ref: str = REF) -> dict:
    return {
        "partner_id": partner,
        "client_order_ref": ref,
        "origin": "HubSpot deal 9001",
        "order_line": [
            [0, 0, {"product_id": products["SKU-A"], "product_uom_qty": 2, "price_unit": 25.0, "name": "A"}],
            [0, 0, {"product_id": products["SKU-B"], "product_uom_qty": 1, "price_unit": 9.5, "name": "B"}],
        ],
    }


@pytest.fixture
def products(odoo: FakeOdoo) -> dict[str, int]:
    return {
        "SKU-A": odoo.add_product("SKU-A", price=30, qty_available=10),
        "SKU-B": odoo.add_product("SKU-B", price=9.5, type="consu"),
        "SKU-S": odoo.add_product("SKU-S", price=100, type="service"),
    }


def test_order_chain_create_find_confirm_reserve_and_tracking(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    assert writer.find_order(REF) is None
    assert writer.find_partner(ref="hubspot-company:42") is None
    partner = _partner(writer)
    assert _found(writer.find_partner(ref="hubspot-company:42"))["id"] == partner
    assert writer.products_by_code(["SKU-A", "SKU-B", "NOPE"]) == {
        "SKU-A": products["SKU-A"],
        "SKU-B": products["SKU-B"],
    }
    assert writer.company_currencies() == {"USD"}

    order_id = writer.create_order(_order_values(partner, products))
    order = writer.find_order(REF)
    assert order is not None and order["id"] == order_id
    assert order["name"] == "S00001" and order["state"] == "draft" and order["currency"] == "USD"
    assert order["amount_total"] == 59.5 and order["partner_id"] == partner and len(order["order_line"]) == 2

    writer.confirm_order(order_id)
    writer.confirm_order(order_id)  # already confirmed: Odoo says no, the state says done; no error
    pickings = writer.reserve_stock(order_id)
    assert len(pickings) == 1 and writer.picking_states(pickings) == {pickings[0]: "assigned"}
    assert odoo.reserved[products["SKU-A"]] == 2.0
    writer.write_picking_tracking(pickings, "EZ1000000001")
    assert odoo.pickings(order_id)[0]["carrier_tracking_ref"] == "EZ1000000001"
    assert writer.read_order(order_id)["state"] == "sale"

    calls = [(m, meth) for m, meth, _, _ in execute_calls(odoo) if meth not in ("search_read", "read")]
    assert calls == [
        ("res.partner", "create"),
        ("sale.order", "create"),
        ("sale.order", "action_confirm"),
        ("sale.order", "action_confirm"),
        ("stock.picking", "action_assign"),
        ("stock.picking", "write"),
    ]
    create = next(a for m, meth, a, _ in execute_calls(odoo) if (m, meth) == ("sale.order", "create"))
    assert create[0]["order_line"][0] == [
        0,
        0,
        {"product_id": products["SKU-A"], "product_uom_qty": 2, "price_unit": 25.0, "name": "A"},
    ]
    write = next(a for m, meth, a, _ in execute_calls(odoo) if (m, meth) == ("stock.picking", "write"))
    assert write == [pickings, {"carrier_tracking_ref": "EZ1000000001"}]


def test_find_order_is_an_exact_match_on_client_order_ref(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    partner = _partner(writer)
    writer.create_order(_order_values(partner, products, ref="hubspot-deal:10"))
    assert writer.find_order("hubspot-deal:1") is None  # a prefix of another key finds nothing
    found = writer.find_order("hubspot-deal:10")
    assert found is not None and found["client_order_ref"] == "hubspot-deal:10"
    model, method, args, kwargs = execute_calls(odoo)[-1]
    assert (model, method, args) == (
        "sale.order",
        "search_read",
        [[["client_order_ref", "=", "hubspot-deal:10"]]],
    )


def test_find_partner_finds_archived_partners_and_matches_the_whole_host(
    odoo: FakeOdoo, writer: OdooWriter
) -> None:
    archived = odoo.add_partner("Old Acme", ref="hubspot-company:7", active=False)
    odoo.add_partner("Not Acme", website="https://notacme.com")
    acme = odoo.add_partner("Acme", website="http://www.acme.com/about", vat="US123", state_code="IL")
    found = writer.find_partner(ref="hubspot-company:7")
    assert found is not None and found["id"] == archived and found["active"] is False
    ref_call = next(c for c in execute_calls(odoo) if c[2] == [[["ref", "=", "hubspot-company:7"]]])
    assert ref_call[3]["context"] == {"active_test": False}
    by_domain = writer.find_partner(website_domain="acme.com")
    assert by_domain is not None and by_domain["id"] == acme
    assert by_domain["country_code"] == "US" and by_domain["state_code"] == "IL"
    assert _found(writer.find_partner(vat="US123"))["id"] == acme
    assert _found(writer.find_partner(partner_id=acme))["name"] == "Acme"
    assert writer.find_partner(partner_id=999, website_domain="example.org") is None


@pytest.mark.parametrize("style", ["not_null", "missing_value"])
def test_a_newly_required_field_is_terminal_and_names_the_field(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int], style: str
) -> None:
    partner = _partner(writer)
    odoo.require_field("sale.order", "x_customer_po", "Customer PO", style=style)  # type: ignore[arg-type]
    odoo.clear_log()
    with pytest.raises(OdooRpcError) as err:
        writer.create_order(_order_values(partner, products))
    assert isinstance(err.value, TerminalError)
    assert err.value.name == "odoo.exceptions.ValidationError"
    assert err.value.field == "x_customer_po"
    assert "Customer PO" in err.value.message and "x_customer_po" in str(err.value)
    assert [r.status for r in odoo.requests] == [200]  # one answer, HTTP 200 with the error inside, no retry
    assert odoo.orders() == []


def test_a_create_committed_then_dropped_is_not_sent_again_and_is_found_by_key(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    partner = _partner(writer)
    odoo.commit_then_drop("create", "sale.order")
    with pytest.raises(OdooWriteUnconfirmed) as err:
        writer.create_order(_order_values(partner, products))
    assert isinstance(err.value, TransientError) and isinstance(err.value, RetriesExhausted)
    creates = [c for c in execute_calls(odoo) if c[:2] == ("sale.order", "create")]
    assert len(creates) == 1
    found = writer.find_order(REF)  # what the step does on its next attempt
    assert found is not None and len(odoo.orders(REF)) == 1


def test_a_create_answered_too_late_is_not_sent_again(
    odoo: FakeOdoo, make_writer: Callable[..., OdooWriter], products: dict[str, int]
) -> None:
    writer = make_writer(timeout=0.5)
    partner = _partner(writer)
    odoo.commit_then_drop("create", "sale.order", mode="timeout", delay=1.5)
    with pytest.raises(OdooWriteUnconfirmed, match="ReadTimeout"):
        writer.create_order(_order_values(partner, products))
    assert len(odoo.orders(REF)) == 1 and writer.find_order(REF) is not None


def test_a_confirmation_whose_answer_was_lost_is_checked_not_repeated(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    order_id = writer.create_order(_order_values(_partner(writer), products))
    odoo.commit_then_drop("action_confirm", "sale.order")
    writer.confirm_order(order_id)  # the re-read sees "sale": done
    assert [c[1] for c in execute_calls(odoo)].count("action_confirm") == 1
    assert len(odoo.pickings(order_id)) == 1


def test_429_retry_after_is_honoured_and_the_create_goes_through_once(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int], sleeps: Sleeps
) -> None:
    partner = _partner(writer)
    odoo.fail_http(429, retry_after=7, method="create", model="sale.order", times=2)
    writer.create_order(_order_values(partner, products))
    assert [s for s in sleeps if s >= 7] == sleeps and len(sleeps) == 2  # never sooner than asked
    assert [r.status for r in odoo.requests][-3:] == [429, 429, 200]
    assert len(odoo.orders(REF)) == 1


def test_5xx_is_retried_for_reads_and_unconfirmed_for_creates(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    partner = _partner(writer)
    odoo.fail_http(502, method="search_read", times=2)
    assert writer.find_order(REF) is None
    odoo.fail_http(503, method="create", model="sale.order")  # refused before it ran: retried in place
    writer.create_order(_order_values(partner, products))
    odoo.fail_http(504, method="create", model="sale.order")  # may have run behind the gateway: not re-sent
    with pytest.raises(OdooWriteUnconfirmed):
        writer.create_order(_order_values(partner, products, ref="hubspot-deal:2"))
    assert len(odoo.orders()) == 1


def test_5xx_until_attempts_run_out_is_transient(
    odoo: FakeOdoo, make_writer: Callable[..., OdooWriter]
) -> None:
    writer = make_writer(max_attempts=3)
    odoo.fail_http(503, times=10)
    with pytest.raises(RetriesExhausted) as err:
        writer.find_order(REF)
    assert isinstance(err.value, TransientError) and err.value.attempts == 3


def test_json_rpc_errors_in_http_200_are_recognised(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    order_id = writer.create_order(_order_values(_partner(writer), products))
    writer.confirm_order(order_id)
    odoo.cancel_order(order_id)
    # a cancelled order cannot be confirmed: Odoo's UserError, in an HTTP 200 envelope
    with pytest.raises(OdooRpcError) as err:
        writer.confirm_order(order_id)
    assert err.value.name == "odoo.exceptions.UserError" and err.value.field is None
    assert "not in a state requiring confirmation" in err.value.message
    # concurrency errors are rolled back by Odoo: retried in place, then it goes through
    odoo.fail_next(
        "psycopg2.errors.SerializationFailure",
        "could not serialize access due to concurrent update",
        when=lambda p: p["args"][4] == "create",
    )
    writer.create_order(_order_values(_partner(writer, "43"), products, ref="hubspot-deal:3"))
    assert len(odoo.orders("hubspot-deal:3")) == 1
    with pytest.raises(OdooRpcError, match="Invalid field"):
        writer.write_order(order_id, {"x_not_a_field": 1})


@pytest.mark.parametrize(
    "call",
    [
        lambda w: w.create("sale.order;drop", {"name": "x"}),
        lambda w: w.create_order({"partner_id": 1, 'client_order_ref"': "x"}),
        lambda w: w.create_order({"partner_id": 1, "order_line": [[0, 0, {"Product ID": 1}]]}),
        lambda w: w.write_order(1, {"name ": "x"}),
        lambda w: w.search_read("res.partner", [["name) or (1", "=", "x"]], ["name"]),
        lambda w: w.search_read("res.partner", [], ["name", "x" * 64]),
        lambda w: w.find_order(""),
    ],
)
def test_bad_identifiers_are_refused_before_the_call(odoo: FakeOdoo, writer: OdooWriter, call) -> None:
    with pytest.raises(OdooBadIdentifier) as err:
        call(writer)
    assert isinstance(err.value, TerminalError)
    assert odoo.requests == []


def test_not_enough_stock_leaves_the_picking_waiting(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    scarce = odoo.add_product("SKU-Z", qty_available=0)
    order_id = writer.create_order(
        {
            "partner_id": _partner(writer),
            "client_order_ref": REF,
            "order_line": [[0, 0, {"product_id": scarce, "product_uom_qty": 3}]],
        }
    )
    writer.confirm_order(order_id)
    pickings = writer.reserve_stock(order_id)
    assert writer.picking_states(pickings) == {pickings[0]: "confirmed"}
    odoo.touch("product.product", [scarce], qty_available=5.0)  # stock arrives
    assert writer.picking_states(writer.reserve_stock(order_id)) == {pickings[0]: "assigned"}


def test_services_only_get_no_picking_and_cancelled_pickings_are_left_out(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    partner = _partner(writer)
    service = writer.create_order(
        {
            "partner_id": partner,
            "client_order_ref": "s",
            "order_line": [[0, 0, {"product_id": products["SKU-S"]}]],
        }
    )
    writer.confirm_order(service)
    assert writer.reserve_stock(service) == []
    goods = writer.create_order(_order_values(partner, products))
    writer.confirm_order(goods)
    odoo.cancel_order(goods)
    assert writer.read_order(goods)["state"] == "cancel" and writer.reserve_stock(goods) == []
    assert odoo.reserved.get(products["SKU-A"], 0.0) == 0.0


def test_amount_change_updates_lines_of_a_confirmed_order_as_odoo_allows(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    order_id = writer.create_order(_order_values(_partner(writer), products))
    writer.confirm_order(order_id)
    lines = writer.read_order(order_id)["order_line"]
    with pytest.raises(OdooRpcError, match="can't remove one of its lines"):
        writer.write_order(order_id, {"order_line": [[5, 0, 0]]})
    writer.write_order(
        order_id,
        {"order_line": [[1, lines[0], {"product_uom_qty": 4}], [1, lines[1], {"product_uom_qty": 0}]]},
    )
    assert writer.read_order(order_id)["amount_total"] == 100.0
    moves = [odoo.models["stock.move"][m] for m in odoo.pickings(order_id)[0]["move_ids"]]
    assert sorted(m["product_uom_qty"] for m in moves) == [0.0, 4.0]


def test_draft_order_lines_can_be_replaced(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    order_id = writer.create_order(_order_values(_partner(writer), products))
    writer.write_order(
        order_id,
        {
            "order_line": [
                [5, 0, 0],
                [0, 0, {"product_id": products["SKU-A"], "product_uom_qty": 1, "price_unit": 12.0}],
            ]
        },
    )
    order = writer.read_order(order_id)
    assert order["amount_total"] == 12.0 and len(order["order_line"]) == 1
    assert len(odoo.models["sale.order.line"]) == 1


def test_the_company_currency_is_the_orders_currency(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    odoo.set_company_currency("EUR")
    assert writer.company_currencies() == {"EUR"}
    order_id = writer.create_order(_order_values(_partner(writer), products))
    assert writer.read_order(order_id)["currency"] == "EUR"


def test_one_writer_serves_eight_threads(
    odoo: FakeOdoo, writer: OdooWriter, products: dict[str, int]
) -> None:
    partner = _partner(writer)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                ref = f"hubspot-deal:{n}-{i}"
                oid = writer.create_order(_order_values(partner, products, ref=ref))
                writer.confirm_order(oid)
                writer.reserve_stock(oid)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    orders = odoo.orders()
    assert len(orders) == 40 and len({o["name"] for o in orders}) == 40
    assert len({o["client_order_ref"] for o in orders}) == 40
    assert all(o["state"] == "sale" for o in orders)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another "
            "model requires the record being deleted. If possible, archive it instead.\n\nModel: Sales Order "
            "(sale.order)\nField: Customer Reference (client_order_ref)\n",
            ("client_order_ref", "sale.order"),
        ),
        ("Missing required value for the field 'Customer' (partner_id)", ("partner_id", None)),
        (
            "The operation cannot be completed:\n- create/update: a mandatory field is not set.\n"
            "Model: 'Model B' (test_rpc.model_b), field 'Name' (name)",
            ("name", "test_rpc.model_b"),
        ),
        ("The following orders are not in a state requiring confirmation: S00042", (None, None)),
    ],
)
def test_missing_field_reads_odoos_texts(message: str, expected: tuple) -> None:
    assert missing_field(message) == expected


def test_from_settings_reads_the_odoo_variables(odoo: FakeOdoo, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (
        ("ODOO_URL", odoo.url),
        ("ODOO_DB", odoo.db),
        ("ODOO_USERNAME", odoo.login),
        ("ODOO_API_KEY", odoo.api_key),
    ):
        monkeypatch.setenv(name, value)
    with OdooWriter.from_settings() as w:
        assert w.company_currencies() == {"USD"}
        assert odoo.api_key not in repr(w)


def test_a_slow_read_times_out_and_is_retried(odoo: FakeOdoo, make_writer: Callable[..., OdooWriter]) -> None:
    writer = make_writer(timeout=0.5)
    writer.company_currencies()  # logged in
    odoo.slow_next(1.5, method="search_read")
    assert writer.find_order(REF) is None  # a read may be sent again: the second attempt answers at once
    assert [c[:2] for c in execute_calls(odoo)][-2:] == [("sale.order", "search_read")] * 2
