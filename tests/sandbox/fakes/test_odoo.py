"""The fake Odoo's write side on the wire (raw JSON-RPC over HTTP): what it answers is what Odoo 17 answers."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from integration_assets.sandbox.fakes._server import Fault
from integration_assets.sandbox.fakes.odoo import FakeOdoo

_ids = itertools.count(1)
# One client for the module: building an httpx.Client (its TLS context) per call costs more than the call.
_http = httpx.Client(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    _http.close()


@pytest.fixture
def odoo() -> Iterator[FakeOdoo]:
    fake = FakeOdoo()
    fake.start()
    yield fake
    fake.stop()


def rpc(
    fake: FakeOdoo, model: str, method: str, args: list[Any], kwargs: dict[str, Any] | None = None
) -> Any:
    """``result``, or the ``error`` member (HTTP status asserted 200 either way)."""
    body = {
        "jsonrpc": "2.0",
        "method": "call",
        "id": next(_ids),
        "params": {
            "service": "object",
            "method": "execute_kw",
            "args": [fake.db, fake.uid, fake.api_key, model, method, args, kwargs or {}],
        },
    }
    response = _http.post(f"{fake.url}/jsonrpc", json=body)
    assert response.status_code == 200
    data = response.json()
    return data["result"] if "result" in data else {"error": data["error"]["data"]}


def error(answer: Any) -> tuple[str, str]:
    assert isinstance(answer, dict) and "error" in answer, answer
    return answer["error"]["name"], answer["error"]["message"]


@pytest.fixture
def partner(odoo: FakeOdoo) -> int:
    return odoo.add_partner("Acme", ref="hubspot-company:1")


def test_create_write_and_x2many_commands(odoo: FakeOdoo, partner: int) -> None:
    a, b, c = (odoo.add_product(code, price=p) for code, p in (("A", 10), ("B", 20), ("C", 5)))
    order = rpc(
        odoo, "sale.order", "create", [{"partner_id": partner, "order_line": [[0, 0, {"product_id": a}]]}]
    )
    assert isinstance(order, int)
    [rec] = rpc(
        odoo, "sale.order", "read", [[order], ["name", "state", "amount_total", "order_line", "partner_id"]]
    )
    assert rec["name"] == "S00001" and rec["state"] == "draft" and rec["amount_total"] == 10.0
    assert rec["partner_id"] == [partner, "Acme"]
    line_a = rec["order_line"][0]
    answer = rpc(
        odoo,
        "sale.order",
        "write",
        [
            [order],
            {
                "order_line": [
                    [1, line_a, {"product_uom_qty": 3}],
                    [0, 0, {"product_id": b, "price_unit": 7.5}],
                ]
            },
        ],
    )
    assert answer is True
    assert rpc(odoo, "sale.order", "read", [[order], ["amount_total"]])[0]["amount_total"] == 37.5
    loose = rpc(odoo, "sale.order.line", "create", [[{"order_id": order, "product_id": c}]])  # a list → ids
    assert isinstance(loose, list) and len(loose) == 1
    lines = rpc(odoo, "sale.order", "read", [[order], ["order_line"]])[0]["order_line"]
    assert len(lines) == 3
    # commands apply in order: a line deleted earlier in the list cannot be kept by a later one, and the
    # whole write is refused
    stale = rpc(odoo, "sale.order", "write", [[order], {"order_line": [[2, lines[1], 0], [6, 0, lines[:2]]]}])
    assert error(stale)[0] == "odoo.exceptions.MissingError"
    assert len(rpc(odoo, "sale.order", "read", [[order], ["order_line"]])[0]["order_line"]) == 3
    rpc(odoo, "sale.order", "write", [[order], {"order_line": [[2, lines[1], 0], [6, 0, [lines[0]]]]}])
    assert rpc(odoo, "sale.order", "read", [[order], ["order_line", "amount_total"]])[0] == {
        "id": order,
        "order_line": [lines[0]],
        "amount_total": 30.0,
    }
    second = rpc(odoo, "sale.order", "create", [{"partner_id": partner}])
    assert rpc(odoo, "sale.order", "read", [[second], ["name"]])[0]["name"] == "S00002"


def test_create_is_all_or_nothing(odoo: FakeOdoo, partner: int) -> None:
    a = odoo.add_product("A")
    answer = rpc(
        odoo,
        "sale.order",
        "create",
        [{"partner_id": partner, "order_line": [[0, 0, {"product_id": a}], [0, 0, {"product_uom_qty": 2}]]}],
    )
    assert error(answer) == (
        "odoo.exceptions.ValidationError",
        "The operation cannot be completed: Missing required fields on accountable sale order line.",
    )
    assert odoo.models["sale.order"] == {} and odoo.models["sale.order.line"] == {}
    name, message = error(rpc(odoo, "sale.order", "create", [{"client_order_ref": "x"}]))
    assert name == "odoo.exceptions.ValidationError"
    assert message.endswith("Model: Sales Order (sale.order)\nField: Customer (partner_id)\n")
    assert error(rpc(odoo, "sale.order", "create", [{"partner_id": 999}]))[1].endswith(
        "Constraint: sale_order_partner_id_fkey\n"
    )
    assert error(rpc(odoo, "sale.order", "create", [{"partner_id": partner, "x_po": 1}])) == (
        "builtins.ValueError",
        "Invalid field 'x_po' on model 'sale.order'",
    )
    assert odoo.models["sale.order"] == {}


def test_required_field_knob_in_both_of_odoos_texts(odoo: FakeOdoo, partner: int) -> None:
    odoo.require_field("sale.order", "client_order_ref", "Customer Reference")
    odoo.require_field("res.partner", "email", "Email", style="missing_value")
    assert (
        "Field: Customer Reference (client_order_ref)\n"
        in error(rpc(odoo, "sale.order", "create", [{"partner_id": partner}]))[1]
    )
    assert error(rpc(odoo, "res.partner", "create", [{"name": "B"}]))[1] == (
        "Missing required value for the field 'Email' (email)"
    )
    odoo.drop_requirement("res.partner", "email")
    assert isinstance(rpc(odoo, "res.partner", "create", [{"name": "B"}]), int)
    # a new custom field, required from the start (Studio): unknown before, required now, then accepted
    unknown = rpc(odoo, "sale.order", "create", [{"partner_id": partner, "x_studio_channel": "web"}])
    assert error(unknown) == ("builtins.ValueError", "Invalid field 'x_studio_channel' on model 'sale.order'")
    odoo.require_field("sale.order", "x_studio_channel", "Sales Channel")
    answer = rpc(odoo, "sale.order", "create", [{"partner_id": partner, "client_order_ref": "r"}])
    assert "Field: Sales Channel (x_studio_channel)\n" in error(answer)[1]
    made = rpc(
        odoo,
        "sale.order",
        "create",
        [{"partner_id": partner, "client_order_ref": "r", "x_studio_channel": "web"}],
    )
    assert rpc(odoo, "sale.order", "read", [[made], ["x_studio_channel"]])[0]["x_studio_channel"] == "web"


def test_methods_odoo_refuses(odoo: FakeOdoo, partner: int) -> None:
    assert error(rpc(odoo, "sale.order", "_action_cancel", [[1]])) == (
        "odoo.exceptions.AccessError",
        "Private methods (such as _action_cancel) cannot be called remotely.",
    )
    assert error(rpc(odoo, "sale.order", "action_explode", [[1]]))[0] == "builtins.AttributeError"
    assert error(rpc(odoo, "x.model", "search_read", [[]])) == (
        "odoo.exceptions.UserError",
        "Object x.model doesn't exist",
    )
    assert error(rpc(odoo, "sale.order", "write", [[42], {"note": "x"}]))[0] == "odoo.exceptions.MissingError"


def test_confirm_assign_cancel(odoo: FakeOdoo, partner: int) -> None:
    scarce = odoo.add_product("S", qty_available=1)
    service = odoo.add_product("V", type="service")
    lines = [[0, 0, {"product_id": scarce, "product_uom_qty": 3}], [0, 0, {"product_id": service}]]
    first = rpc(odoo, "sale.order", "create", [{"partner_id": partner, "order_line": lines}])
    second = rpc(odoo, "sale.order", "create", [{"partner_id": partner, "order_line": lines}])
    assert rpc(odoo, "sale.order", "action_confirm", [[first, second]]) is True
    assert error(rpc(odoo, "sale.order", "action_confirm", [[first]])) == (
        "odoo.exceptions.UserError",
        "The following orders are not in a state requiring confirmation: S00001",
    )
    [p1], [p2] = (
        rpc(odoo, "sale.order", "read", [[o], ["picking_ids"]])[0]["picking_ids"] for o in (first, second)
    )
    [picking] = rpc(odoo, "stock.picking", "read", [[p1], ["state", "origin", "sale_id", "move_ids"]])
    assert picking["state"] == "confirmed" and picking["origin"] == "S00001" and len(picking["move_ids"]) == 1
    assert rpc(odoo, "stock.picking", "action_assign", [[p1, p2]]) is True
    states = {r["id"]: r["state"] for r in rpc(odoo, "stock.picking", "read", [[p1, p2], ["state"]])}
    assert states == {p1: "assigned", p2: "confirmed"}  # 1 of 3 reserved for the first (ASAP), none left
    assert odoo.reserved[scarce] == 1.0
    wizard = rpc(odoo, "sale.order", "action_cancel", [[first]])
    assert wizard["res_model"] == "sale.order.cancel" and odoo.orders()[0]["state"] == "sale"
    assert (
        rpc(odoo, "sale.order", "action_cancel", [[first]], {"context": {"disable_cancel_warning": True}})
        is True
    )
    assert rpc(odoo, "stock.picking", "read", [[p1], ["state"]])[0]["state"] == "cancel"
    assert odoo.reserved[scarce] == 0.0
    assert error(rpc(odoo, "stock.picking", "action_assign", [[p1]])) == (
        "odoo.exceptions.UserError",
        "Nothing to check the availability for.",
    )


def test_commit_then_drop_commits_and_answers_nothing(odoo: FakeOdoo, partner: int) -> None:
    odoo.commit_then_drop("create", "sale.order")
    with pytest.raises(httpx.RemoteProtocolError):
        rpc(odoo, "sale.order", "create", [{"partner_id": partner, "client_order_ref": "k"}])
    assert len(odoo.orders("k")) == 1
    assert odoo.requests[-1].fault == "committed, then drop"
    assert isinstance(rpc(odoo, "sale.order", "create", [{"partner_id": partner}]), int)  # once only


def test_http_faults_queue_before_a_test_fault(odoo: FakeOdoo) -> None:
    odoo.fault = lambda req: Fault(503) if req.body["params"]["args"][4] == "search_count" else None
    odoo.fail_http(429, retry_after=2, method="search_read")
    body = {"jsonrpc": "2.0", "method": "call", "id": 1}

    def post(method: str) -> httpx.Response:
        args = [odoo.db, odoo.uid, odoo.api_key, "res.partner", method, [[]], {}]
        params = {"service": "object", "method": "execute_kw", "args": args}
        return _http.post(f"{odoo.url}/jsonrpc", json={**body, "params": params})

    first = post("search_read")
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert post("search_read").status_code == 200
    assert post("search_count").status_code == 503
    odoo.fault = None
    assert post("search_count").status_code == 200


def test_concurrent_creates_get_distinct_names(odoo: FakeOdoo, partner: int) -> None:
    names: list[str] = []

    def work() -> None:
        for _ in range(5):
            oid = rpc(odoo, "sale.order", "create", [{"partner_id": partner}])
            names.append(rpc(odoo, "sale.order", "read", [[oid], ["name"]])[0]["name"])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names) == [f"S{i:05d}" for i in range(1, 41)]
