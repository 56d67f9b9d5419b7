"""The naive outbound handler the outbound benchmark compares against (issue 12, docs/BENCHMARKS.md).

What many integrations do: the HubSpot webhook handler itself, inside the request, makes every call of the
chain in sequence with plain httpx: read the deal, its company and its line items from HubSpot, find the
partner and the products in Odoo, create and confirm the sale order, reserve its delivery, verify the address
and buy the label in EasyPost, write the tracking number to the picking and the deal, and only then answer.
It verifies HubSpot's signature, like the real receiver, and has no outbox, no ledger, no queue and no retry:
a call that fails or times out fails the request (HubSpot would retry the webhook later, creating a second
order, since nothing looks the first one up; the benchmark does not retry).

Run it as an ASGI factory (the benchmark starts it under uvicorn in a subprocess):

    uvicorn bench.outbound_naive:create_app --factory

Configuration from the environment, the same variable names as the project's: ``HUBSPOT_BASE_URL``,
``HUBSPOT_ACCESS_TOKEN``, ``HUBSPOT_CLIENT_SECRET``, ``INTEGRATION_WEBHOOK_PUBLIC_URL``, ``ODOO_URL``,
``ODOO_DB``, ``ODOO_USERNAME``, ``ODOO_API_KEY``, ``EASYPOST_BASE_URL``, ``EASYPOST_API_KEY``;
``NAIVE_HTTP_TIMEOUT_S`` (default 5 s, httpx's default) bounds each call.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from integration_assets.providers import hubspot
from integration_assets.providers.base import SignatureError

WON_STAGE = "closedwon"
# The shipper and the parcel: the same values as the outbound policy's defaults (policies.yaml, outbound:).
FROM_ADDRESS = {
    "company": "Integration Assets Warehouse",
    "street1": "417 Montgomery Street",
    "street2": "Floor 5",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94104",
    "country": "US",
    "phone": "4155555555",
}
PARCEL = {"length": 10, "width": 8, "height": 4, "weight": 16}
ADDRESS_FIELDS = (
    "name",
    "company",
    "street1",
    "street2",
    "city",
    "state",
    "zip",
    "country",
    "phone",
    "email",
)


class ChainFailed(Exception):
    """A call of the chain answered with an error: the request fails (500)."""


class Naive:
    """One httpx client per API, shared by the requests (keep-alive), as a hand-written service would."""

    def __init__(self) -> None:
        env = os.environ
        timeout = float(env.get("NAIVE_HTTP_TIMEOUT_S", "5"))
        self.secret = env["HUBSPOT_CLIENT_SECRET"]
        self.public_url = env.get("INTEGRATION_WEBHOOK_PUBLIC_URL") or ""
        self.hubspot = httpx.AsyncClient(
            base_url=env["HUBSPOT_BASE_URL"],
            headers={"Authorization": f"Bearer {env['HUBSPOT_ACCESS_TOKEN']}"},
            timeout=timeout,
        )
        self.odoo = httpx.AsyncClient(base_url=env["ODOO_URL"], timeout=timeout)
        self.easypost = httpx.AsyncClient(
            base_url=env["EASYPOST_BASE_URL"],
            headers={"Authorization": f"Bearer {env['EASYPOST_API_KEY']}"},
            timeout=timeout,
        )
        self.odoo_db, self.odoo_login, self.odoo_key = (
            env["ODOO_DB"],
            env["ODOO_USERNAME"],
            env["ODOO_API_KEY"],
        )
        self.uid: int | None = None
        self._ids = itertools.count(1)

    async def close(self) -> None:
        for client in (self.hubspot, self.odoo, self.easypost):
            await client.aclose()

    # -- HubSpot ------------------------------------------------------------------------------------------
    async def hs(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.hubspot.request(method, path, **kw)
        if r.status_code >= 300 and r.status_code != 207:
            raise ChainFailed(f"HubSpot {method} {path}: {r.status_code}")
        return r.json()

    # -- Odoo JSON-RPC ------------------------------------------------------------------------------------
    async def rpc(self, service: str, method: str, args: list[Any]) -> Any:
        body = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": next(self._ids),
            "params": {"service": service, "method": method, "args": args},
        }
        r = await self.odoo.post("/jsonrpc", json=body)
        if r.status_code != 200:
            raise ChainFailed(f"Odoo {method}: HTTP {r.status_code}")
        doc = r.json()
        if "error" in doc:  # Odoo answers its errors inside an HTTP 200
            raise ChainFailed(f"Odoo {method}: {doc['error'].get('data', {}).get('name')}")
        return doc.get("result")

    async def odoo_call(
        self, model: str, method: str, args: list[Any], kwargs: dict[str, Any] | None = None
    ) -> Any:
        if self.uid is None:
            self.uid = await self.rpc("common", "login", [self.odoo_db, self.odoo_login, self.odoo_key])
        return await self.rpc(
            "object",
            "execute_kw",
            [self.odoo_db, self.uid, self.odoo_key, model, method, args, kwargs or {}],
        )

    # -- EasyPost -----------------------------------------------------------------------------------------
    async def ep(self, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.easypost.post(path, json=body)
        if r.status_code >= 300:
            raise ChainFailed(f"EasyPost {path}: {r.status_code}")
        return r.json()

    # -- the chain, in sequence ---------------------------------------------------------------------------
    async def chain(self, deal_id: str) -> str:
        companies = await self.hs("GET", f"/crm/v4/objects/deals/{deal_id}/associations/companies")
        company_id = str(companies["results"][0]["toObjectId"])
        company = await self.hs(
            "GET",
            f"/crm/v3/objects/companies/{company_id}",
            params={"properties": "name,domain,odoo_partner_id"},
        )
        links = await self.hs("GET", f"/crm/v4/objects/deals/{deal_id}/associations/line_items")
        items = await self.hs(
            "POST",
            "/crm/v3/objects/line_items/batch/read",
            json={
                "properties": ["name", "hs_sku", "quantity", "price"],
                "inputs": [{"id": str(x["toObjectId"])} for x in links["results"]],
            },
        )
        lines = [x["properties"] for x in items["results"]]
        partner_id = int(company["properties"]["odoo_partner_id"])
        [partner] = await self.odoo_call(
            "res.partner", "read", [[partner_id], ["name", "street", "city", "zip", "country_id", "phone"]]
        )
        codes = sorted({ln["hs_sku"] for ln in lines})
        products = await self.odoo_call(
            "product.product", "search_read", [[["default_code", "in", codes]]], {"fields": ["default_code"]}
        )
        product_ids = {p["default_code"]: p["id"] for p in products}
        order_id = await self.odoo_call(
            "sale.order",
            "create",
            [
                {
                    "partner_id": partner_id,
                    "client_order_ref": f"hubspot-deal:{deal_id}",
                    "order_line": [
                        [
                            0,
                            0,
                            {
                                "product_id": product_ids[ln["hs_sku"]],
                                "product_uom_qty": float(ln["quantity"]),
                                "price_unit": float(ln["price"]),
                                "name": ln["name"],
                            },
                        ]
                        for ln in lines
                    ],
                }
            ],
        )
        await self.odoo_call("sale.order", "action_confirm", [[order_id]])
        [order] = await self.odoo_call("sale.order", "read", [[order_id], ["name", "picking_ids"]])
        pickings = list(order["picking_ids"] or [])
        if pickings:
            await self.odoo_call("stock.picking", "action_assign", [pickings])
        to_address = {
            "name": partner["name"],
            "street1": partner["street"],
            "city": partner["city"],
            "zip": partner["zip"],
            "country": "US",
            "phone": partner["phone"] or None,
        }
        verified = await self.ep("/v2/addresses", {"address": to_address, "verify_strict": True})
        shipment = await self.ep(
            "/v2/shipments",
            {
                "shipment": {
                    "to_address": {k: verified.get(k) for k in ADDRESS_FIELDS},
                    "from_address": FROM_ADDRESS,
                    "parcel": PARCEL,
                    "reference": f"hubspot-deal:{deal_id}",
                }
            },
        )
        rate = min(shipment["rates"], key=lambda x: float(x["rate"]))
        bought = await self.ep(f"/v2/shipments/{shipment['id']}/buy", {"rate": {"id": rate["id"]}})
        tracking = str(bought["tracking_code"])
        if pickings:
            await self.odoo_call("stock.picking", "write", [pickings, {"carrier_tracking_ref": tracking}])
        await self.hs(
            "PATCH",
            f"/crm/v3/objects/deals/{deal_id}",
            json={
                "properties": {
                    "odoo_order_name": str(order["name"]),
                    "tracking_number": tracking,
                    "shipment_status": "pre_transit",
                    "label_url": str(bought["postage_label"]["label_url"]),
                }
            },
        )
        return tracking


def create_app() -> Starlette:
    naive = Naive()

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            hubspot.verify(
                method="POST",
                uri=(naive.public_url or str(request.base_url).rstrip("/")) + request.url.path,
                body=body,
                signature=request.headers.get("x-hubspot-signature-v3"),
                timestamp=request.headers.get("x-hubspot-request-timestamp"),
                client_secret=naive.secret,
            )
        except SignatureError as exc:
            return JSONResponse({"error": type(exc).__name__}, status_code=401)
        won = [
            str(e["objectId"])
            for e in json.loads(body)
            if e.get("subscriptionType") == "deal.propertyChange"
            and e.get("propertyName") == "dealstage"
            and e.get("propertyValue") == WON_STAGE
        ]
        t0 = time.perf_counter()
        try:
            tracking = [await naive.chain(d) for d in won]
        except (ChainFailed, httpx.HTTPError, KeyError, ValueError) as exc:
            return JSONResponse({"error": type(exc).__name__, "detail": str(exc)[:200]}, status_code=500)
        return JSONResponse({"tracking": tracking, "ms": round((time.perf_counter() - t0) * 1000)})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await naive.close()

    return Starlette(
        routes=[
            Route("/webhooks/hubspot", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
