"""Webhook fixtures: test secrets, signed provider requests, and an app on a real SQL queue."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_assets.providers import easypost, hubspot, stripe
from integration_assets.queue import Queue
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse import db
from integration_assets.webhooks.app import create_app
from integration_assets.webhooks.receive import WebhookConfig

STRIPE_SECRET = "whsec_test_current_0123456789"
STRIPE_OLD_SECRET = "whsec_test_previous_9876543210"
HUBSPOT_SECRET = "3b1c2f1e-hubspot-client-secret"
# Composed "é" and a ligature: EasyPost's clients sign with the NFKD form of the secret.
EASYPOST_SECRET = "ep_s\u00e9cret_\ufb01"
HUBSPOT_URL = "http://testserver/webhooks/hubspot"
SECRETS = {"stripe": (STRIPE_SECRET,), "hubspot": (HUBSPOT_SECRET,), "easypost": (EASYPOST_SECRET,)}


def stripe_event(evt: str = "evt_1PqR1s2eZvKYlo2C", type_: str = "payment_intent.succeeded") -> bytes:
    return json.dumps(
        {
            "id": evt,
            "object": "event",
            "api_version": "2024-06-20",
            "created": 1723566000,
            "type": type_,
            "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 2000, "currency": "usd"}},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }
    ).encode()


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, t: int | None = None) -> dict[str, str]:
    return {
        "content-type": "application/json; charset=utf-8",
        "stripe-signature": stripe.sign(body, secret, int(time.time()) if t is None else t),
        "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


def hubspot_body(*event_ids: int) -> bytes:
    return json.dumps(
        [
            {
                "eventId": i,
                "subscriptionId": 7,
                "portalId": 62515,
                "appId": 54321,
                "occurredAt": 1723566000123,
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": 1000 + i,
                "propertyName": "email",
                "propertyValue": f"c{i}@example.com",
                "changeSource": "CRM",
                "sourceId": "userId:1",
            }
            for i in event_ids
        ]
    ).encode()


def hubspot_headers(
    body: bytes, uri: str = HUBSPOT_URL, ts_ms: int | None = None, secret: str = HUBSPOT_SECRET
) -> dict[str, str]:
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    return {
        "content-type": "application/json",
        "x-hubspot-request-timestamp": str(ts),
        "x-hubspot-signature-v3": hubspot.sign("POST", uri, body, ts, secret),
        "x-hubspot-signature-version": "v3",
    }


def easypost_body(evt: str = "evt_0a1b2c3d") -> bytes:
    return json.dumps(
        {
            "id": evt,
            "object": "Event",
            "description": "tracker.updated",
            "mode": "production",
            "status": "pending",
            "created_at": "2024-08-02T19:26:52.000Z",
            "result": {"id": "trk_1", "object": "Tracker", "status": "in_transit"},
        }
    ).encode()


def easypost_headers(body: bytes, secret: str = EASYPOST_SECRET) -> dict[str, str]:
    return {"content-type": "application/json", "x-hmac-signature": easypost.sign(body, secret)}


def test_config(**overrides: Any) -> WebhookConfig:
    values: dict[str, Any] = {
        "secrets": SECRETS,
        "enqueue_timeout_s": 10.0,
    }
    values.update(overrides)
    return WebhookConfig(**values)


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture(scope="module")
def sqlite_warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated SQLite warehouse per module; each test gets its own queue name in it."""
    url = f"sqlite:///{tmp_path_factory.mktemp('webhooks') / 'warehouse.db'}"
    db.upgrade(url)
    return url


@pytest.fixture
def queue_name() -> str:
    return f"wh{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sql_queue(sqlite_warehouse: str, queue_name: str) -> SqlQueue:
    """The queue the app publishes to, for assertions."""
    return SqlQueue(sqlite_warehouse, name=queue_name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


MakeClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(
    sqlite_warehouse: str, queue_name: str, isolated_env: Path
) -> AsyncIterator[MakeClient]:
    """Apps driven in-process through httpx's ASGI transport (request bodies are pulled lazily, as from a
    socket), with their lifespan (the publisher thread) running."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            queue_factory: Callable[[], Queue] | None = None, queue_url: str | None = None, **config: Any
        ) -> httpx.AsyncClient:
            if queue_url is None and queue_factory is None:
                queue_factory = lambda: SqlQueue(sqlite_warehouse, name=queue_name)  # noqa: E731
            app = create_app(queue_url=queue_url, queue_factory=queue_factory, config=test_config(**config))
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
            await stack.enter_async_context(client)
            client.app = app  # type: ignore[attr-defined]
            return client

        yield make


@pytest.fixture
async def client(make_client: MakeClient) -> httpx.AsyncClient:
    return await make_client()
