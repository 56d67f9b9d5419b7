"""A provider declared in this test only goes receiver → SQL queue → drain → warehouse without any other
module knowing it (docs/ARCHITECTURE.md "Add a provider"): its own path, HMAC signature, id and type fields,
volatile field and routing to an event contract of its own (tests/fixtures/providers)."""

from __future__ import annotations

import asyncio
import hmac
import json
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from integration_assets import providers
from integration_assets.events.drain import DrainReport, drain
from integration_assets.providers.base import (
    Clock,
    Destination,
    Event,
    InvalidSignature,
    PayloadError,
    Provider,
    SignedRequest,
    event_type,
    hmac_sha256,
)
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import processed_events, shipment_events
from integration_assets.webhooks.app import create_app
from integration_assets.webhooks.receive import WebhookConfig

SECRET = "toy-secret"
CONTRACTS = Path(__file__).parents[1] / "fixtures" / "providers"


class Toy(Provider):
    name = "toy"
    secret_vars = ()  # the test hands its secret to the receiver's config
    signature_headers = ("x-toy-signature",)
    volatile_fields = frozenset({"attempt"})
    contracts_root = CONTRACTS

    def verify(
        self, request: SignedRequest, secrets: tuple[str, ...], *, tolerance_s: float = 300, clock: Clock
    ) -> dict[str, str]:
        given = request.headers.get("x-toy-signature", "").encode("ascii", errors="replace")
        if not any(hmac.compare_digest(sign(request.body, s).encode(), given) for s in secrets):
            raise InvalidSignature("x-toy-signature does not match the payload")
        return {}

    def events(self, doc: Any, body: bytes) -> list[Event]:
        if not isinstance(doc, dict) or not isinstance(doc.get("toy_id"), str):
            raise PayloadError("not a toy event (toy_id)")
        return [Event(f"toy:{doc['toy_id']}", event_type(doc.get("kind"), "kind"), body, doc)]

    def destination(self, doc: Mapping[str, Any], event_type: str) -> Destination:
        return Destination("contract", event_type.split(".", 1)[0])  # parcel.moved -> toy/parcel


def sign(body: bytes, secret: str) -> str:
    return hmac_sha256(secret.encode(), body).hex()


@pytest.fixture
def toy() -> Iterator[Provider]:
    yield providers.register(Toy())
    providers.unregister("toy")


def post(app: Any, bodies: list[bytes]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return [
                    await client.post(
                        "/webhooks/toy",
                        content=body,
                        headers={"content-type": "application/json", "x-toy-signature": sign(body, SECRET)},
                    )
                    for body in bodies
                ]

    return asyncio.run(run())


def test_a_toy_provider_lands_in_the_warehouse(toy: Provider, warehouse_url: str) -> None:
    name = f"toy{uuid.uuid4().hex[:12]}"

    def receiver() -> Any:  # built after the registration: its routes are the registry's
        config = WebhookConfig(secrets={"toy": (SECRET,)})
        return create_app(queue_factory=lambda: SqlQueue(warehouse_url, name=name), config=config)

    app = receiver()
    event = {
        "toy_id": "evt_toy_1",
        "kind": "parcel.moved",
        "attempt": 1,
        "parcel": {"id": "prc_1", "code": " TRK1 ", "status": "in_transit", "at": "2026-11-26T12:00:00Z"},
    }
    body = json.dumps(event).encode()
    retry = json.dumps({**event, "attempt": 2}).encode()  # a redelivery: only the volatile field differs
    forged = json.dumps({**event, "toy_id": "evt_toy_2"}).encode()

    first, again = post(app, [body, retry])
    assert (first.status_code, first.json(), again.status_code) == (200, {"accepted": 1}, 200)
    metrics = app.state.metrics
    assert metrics.value("webhook_key_duplicates_total", provider="toy") == 1  # stored once by the queue
    assert metrics.value("webhook_events_enqueued_total", provider="toy") == 2
    bad = asyncio.run(_post_forged(app, forged))
    assert (bad.status_code, bad.json()) == (401, {"error": "bad_signature"})

    engine = get_engine(warehouse_url)
    report = _drain(warehouse_url, name, engine)
    assert (report.totals.applied, report.totals.dead_lettered) == (1, 0), report.as_dict()
    with engine.connect() as conn:
        rows = conn.execute(sa.select(shipment_events)).mappings().all()
        ledger = conn.execute(sa.select(processed_events.c.source, processed_events.c.outcome)).all()
    assert [(r["source_system"], r["source_id"], r["tracking_code"], r["status"]) for r in rows] == [
        ("toy", "prc_1", "TRK1", "in_transit")
    ]
    assert [tuple(r) for r in ledger] == [("toy", "applied")]

    # Delivered again after it was applied: the drain counts it as a duplicate and changes nothing.
    assert post(receiver(), [retry])[0].status_code == 200
    report = _drain(warehouse_url, name, engine)
    assert (report.totals.applied, report.totals.duplicates) == (0, 1), report.as_dict()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(shipment_events)).scalar_one() == 1


async def _post_forged(app: Any, body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {"content-type": "application/json", "x-toy-signature": sign(body, "not-" + SECRET)}
        return await client.post("/webhooks/toy", content=body, headers=headers)


def _drain(url: str, name: str, engine: sa.Engine) -> DrainReport:
    with SqlQueue(url, name=name) as queue:
        return drain(queue, engine=engine)


def test_the_registry_serves_the_toy_provider(toy: Provider) -> None:
    assert providers.get("toy") is toy and "toy" in providers.names()
    assert (
        providers.volatile_fields("toy") == {"attempt"} and providers.volatile_fields("nobody") == frozenset()
    )
    assert toy.path == "/webhooks/toy"
