"""Seeded, signed sample webhook events (Stripe, HubSpot, EasyPost) for the demo, the tests and the benchmark.

The stream looks like what the providers send (docs/SOURCES.md §1.5, §3, §4.3) and misbehaves the way
they do:

- PaymentIntents go through their lifecycle (``created`` → ``processing`` → ``succeeded``, some fail or are
  canceled), each with a ``charge.succeeded``; some are refunded (``charge.refunded`` + ``refund.*``).
  ``metadata.order_id`` links most payments to an Odoo sale.order (from ``order_ids``), some to an order the
  warehouse does not know, some to none; customers (``cus_…``) are not in the warehouse at all.
- EasyPost trackers move pre_transit → in_transit → out_for_delivery → delivered.
- HubSpot property changes hit known contacts (``contact_ids``), one unknown contact and one property the
  contract does not map.
- Deliveries: every event once, some twice or three times (provider retries), shuffled, so older states
  arrive after newer ones.
- Poison that passes the signature check: an event type without a contract (``customer.created``) and a
  PaymentIntent with a status the contract does not know.

``signed_request`` builds the exact HTTP request a provider would send (body bytes and signature headers),
and ``post_events`` posts them to the real receiver app in-process, so events enter the queue through the
same code as in production.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from integration_assets.providers import easypost, hubspot, stripe
from integration_assets.providers.hubspot import event_key as hubspot_event_key
from integration_assets.providers.stripe import parse_secrets
from integration_assets.webhooks.app import create_app
from integration_assets.webhooks.receive import WebhookConfig

Provider = Literal["stripe", "hubspot", "easypost"]

# Test-only secrets for the demo's receiver (never real ones; the demo sets them in its own process only).
DEMO_SECRETS = {
    "STRIPE_WEBHOOK_SECRET": "whsec_demo_0123456789abcdef",
    "HUBSPOT_CLIENT_SECRET": "demo-hubspot-client-secret",
    "EASYPOST_WEBHOOK_SECRET": "demo-easypost-webhook-secret",
}
RECEIVER_URL = "http://127.0.0.1:8787"


@dataclass(frozen=True)
class SampleEvent:
    """One provider event. ``expect`` is what processing it must do: ``apply`` or ``dead_letter:<check>``."""

    provider: Provider
    event_id: (
        str  # the queue message id: stripe:evt_…, hubspot:<eventId>:<digest> (queue.keys), easypost:evt_…
    )
    payload: dict[str, Any]
    expect: str = "apply"
    object_id: str | None = None

    def body(self) -> bytes:
        """The raw body the provider posts (HubSpot posts an array of events)."""
        doc: Any = [self.payload] if self.provider == "hubspot" else self.payload
        return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class EventSample:
    events: list[SampleEvent]
    deliveries: list[SampleEvent]  # events in delivery order, duplicates included
    expected: dict[str, Any] = field(default_factory=dict)


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0

    def stripe(self, prefix: str) -> str:
        self.n += 1
        tail = "".join(self.rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789", k=14))
        return f"{prefix}_{self.n:06d}{tail}"


def stripe_event(evt: str, type_: str, obj: dict[str, Any], created: int) -> dict[str, Any]:
    """A Stripe Event envelope (docs/SOURCES.md §3.1) around a snapshot of ``obj``."""
    return {
        "id": evt,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
    }


def payment_intent(
    pi: str,
    amount: int,
    currency: str,
    status: str,
    created: int,
    *,
    customer: str | None,
    charge: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    return {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "customer": customer,
        "status": status,
        "latest_charge": charge,
        "metadata": metadata,
        "created": created,
    }


def charge(
    ch: str,
    pi: str,
    amount: int,
    currency: str,
    created: int,
    *,
    customer: str | None,
    refunded: int = 0,
    metadata: dict[str, str] | None = None,
    status: str = "succeeded",
) -> dict[str, Any]:
    return {
        "id": ch,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "refunded": refunded >= amount,
        "currency": currency,
        "customer": customer,
        "payment_intent": pi,
        "status": status,
        "paid": status == "succeeded",
        "balance_transaction": None,
        "metadata": metadata or {},
        "created": created,
    }


def refund(
    re_: str,
    ch: str,
    pi: str,
    amount: int,
    currency: str,
    status: str,
    created: int,
    reason: str | None = "requested_by_customer",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": re_,
        "object": "refund",
        "amount": amount,
        "charge": ch,
        "payment_intent": pi,
        "currency": currency,
        "status": status,
        "reason": reason,
        "metadata": metadata or {},
        "created": created,
    }


def tracker_event(
    evt: str,
    trk: str,
    code: str,
    status: str,
    previous: str | None,
    at: datetime,
    created: datetime,
    *,
    carrier: str = "USPS",
    shipment: str | None = None,
) -> dict[str, Any]:
    """An EasyPost ``tracker.updated`` event (docs/SOURCES.md §4.3) with the Tracker as ``result``."""
    iso = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return {
        "id": evt,
        "object": "Event",
        "description": "tracker.updated" if previous else "tracker.created",
        "mode": "test",
        "status": "pending",
        "previous_attributes": {"status": previous} if previous else {},
        "pending_urls": ["https://example.com/easypost"],
        "completed_urls": [],
        "created_at": iso,
        "updated_at": iso,
        "user_id": "user_demo",
        "result": {
            "id": trk,
            "object": "Tracker",
            "mode": "test",
            "tracking_code": code,
            "status": status,
            "status_detail": {
                "pre_transit": "label_created",
                "in_transit": "arrived_at_facility",
                "out_for_delivery": "out_for_delivery",
                "delivered": "arrived_at_destination",
            }.get(status, "unknown"),
            "carrier": carrier,
            "shipment_id": shipment,
            "signed_by": None,
            "weight": 15.4,
            "est_delivery_date": (created + timedelta(days=3)).strftime("%Y-%m-%dT00:00:00Z"),
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updated_at": iso,
            "tracking_details": [],
        },
    }


def _hubspot_event(
    event_id: int, object_id: str, occurred: datetime, subscription: str, **extra: Any
) -> dict[str, Any]:
    """One element of a HubSpot webhook array (docs/SOURCES.md §1.5)."""
    return {
        "eventId": event_id,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": int(occurred.timestamp() * 1000),
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": int(object_id),
        **extra,
        "changeSource": "CRM",
        "sourceId": "userId:1",
    }


def hubspot_change(
    event_id: int,
    object_id: str,
    prop: str,
    value: str | None,
    occurred: datetime,
    subscription: str = "contact.propertyChange",
) -> dict[str, Any]:
    """A property change: one property's new value."""
    return _hubspot_event(event_id, object_id, occurred, subscription, propertyName=prop, propertyValue=value)


def hubspot_archive(
    event_id: int, object_id: str, occurred: datetime, subscription: str = "contact.deletion"
) -> dict[str, Any]:
    """A deletion or restore (``<object>.deletion`` / ``<object>.restore``): no property, no value."""
    extra = {"changeFlag": "DELETED"} if subscription.endswith(".deletion") else {}
    return _hubspot_event(event_id, object_id, occurred, subscription, **extra)


# HubSpot's "Test" deliveries as captured from an app's webhook settings (docs/PROVIDERS.md): two different
# events with one eventId. Read only: copy before changing one.
HUBSPOT_TEST_CREATION: dict[str, Any] = {
    "appId": 4210286,
    "eventId": 100,
    "subscriptionId": 2881778,
    "portalId": 44237313,
    "occurredAt": 1731612159499,
    "subscriptionType": "contact.creation",
    "attemptNumber": 0,
    "objectId": 123,
    "changeSource": "CRM",
    "changeFlag": "NEW",
}
HUBSPOT_TEST_PROPERTY_CHANGE: dict[str, Any] = {
    "appId": 4210286,
    "eventId": 100,
    "subscriptionId": 2902227,
    "portalId": 44237313,
    "occurredAt": 1731612210994,
    "subscriptionType": "contact.propertyChange",
    "attemptNumber": 0,
    "objectId": 123,
    "changeSource": "CRM",
    "propertyName": "message",
    "propertyValue": "sample-value",
}


def generate_event_samples(
    seed: int = 7,
    *,
    payments: int = 40,
    trackers: int = 15,
    contact_ids: Sequence[str] = (),
    order_ids: Sequence[str] = (),
    now: datetime | None = None,
    duplicate_rate: float = 0.15,
    poison: bool = True,
) -> EventSample:
    """A realistic, seeded event stream (see the module docstring). Times end shortly before ``now``."""
    rng = random.Random(seed)  # noqa: S311 - seeded sample data, not secrets
    ids = _Ids(rng)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = int((now - timedelta(hours=2)).timestamp())
    events: list[SampleEvent] = []

    def add(
        provider: Provider,
        event_id: str,
        payload: dict[str, Any],
        expect: str = "apply",
        object_id: str | None = None,
    ) -> None:
        key = hubspot_event_key(payload) if provider == "hubspot" else f"{provider}:{event_id}"
        events.append(SampleEvent(provider, key, payload, expect, object_id))

    final_pi: dict[str, str] = {}
    for i in range(payments):
        pi, ch = ids.stripe("pi"), ids.stripe("ch")
        amount = rng.choice([1999, 4500, 12900, 25000, 89900, 149000])
        currency = rng.choice(["usd", "usd", "eur", "gbp"])
        customer = f"cus_demo{rng.randrange(10_000):04d}"
        r = rng.random()
        meta = (
            {"order_id": rng.choice(order_ids)}
            if order_ids and r < 0.7
            else {"order_id": f"{900_000 + i}"}
            if r < 0.8
            else {}
        )
        t = start + i * 60
        outcome = "succeeded" if rng.random() < 0.85 else rng.choice(["requires_payment_method", "canceled"])
        add(
            "stripe",
            e := ids.stripe("evt"),
            stripe_event(
                e,
                "payment_intent.created",
                payment_intent(
                    pi,
                    amount,
                    currency,
                    "requires_payment_method",
                    t,
                    customer=customer,
                    charge=None,
                    metadata=meta,
                ),
                t,
            ),
            object_id=pi,
        )
        add(
            "stripe",
            e := ids.stripe("evt"),
            stripe_event(
                e,
                "payment_intent.processing",
                payment_intent(
                    pi, amount, currency, "processing", t, customer=customer, charge=ch, metadata=meta
                ),
                t + 2,
            ),
            object_id=pi,
        )
        final_type = {
            "succeeded": "payment_intent.succeeded",
            "canceled": "payment_intent.canceled",
            "requires_payment_method": "payment_intent.payment_failed",
        }[outcome]
        # Same second as "processing" half of the time: the lifecycle rank must decide.
        t_final = t + 2 + rng.choice([0, 1])
        add(
            "stripe",
            e := ids.stripe("evt"),
            stripe_event(
                e,
                final_type,
                payment_intent(pi, amount, currency, outcome, t, customer=customer, charge=ch, metadata=meta),
                t_final,
            ),
            object_id=pi,
        )
        final_pi[pi] = outcome
        if outcome == "succeeded":
            add(
                "stripe",
                e := ids.stripe("evt"),
                stripe_event(
                    e,
                    "charge.succeeded",
                    charge(ch, pi, amount, currency, t + 2, customer=customer, metadata=meta),
                    t_final,
                ),
                object_id=ch,
            )
            if rng.random() < 0.12:
                re_ = ids.stripe("re")
                add(
                    "stripe",
                    e := ids.stripe("evt"),
                    stripe_event(
                        e,
                        "charge.refunded",
                        charge(
                            ch, pi, amount, currency, t + 2, customer=customer, refunded=amount, metadata=meta
                        ),
                        t_final + 600,
                    ),
                    object_id=ch,
                )
                add(
                    "stripe",
                    e := ids.stripe("evt"),
                    stripe_event(
                        e,
                        "refund.created",
                        refund(re_, ch, pi, amount, currency, "pending", t_final + 600),
                        t_final + 600,
                    ),
                    object_id=re_,
                )
                add(
                    "stripe",
                    e := ids.stripe("evt"),
                    stripe_event(
                        e,
                        "refund.updated",
                        refund(re_, ch, pi, amount, currency, "succeeded", t_final + 600),
                        t_final + 660,
                    ),
                    object_id=re_,
                )

    base = now - timedelta(hours=2)
    for i in range(trackers):
        trk = f"trk_{ids.stripe('x')[2:]}"
        code = f"9400100208303{rng.randrange(10**9):09d}"
        created = base + timedelta(minutes=i)
        steps = ["pre_transit", "in_transit", "out_for_delivery", "delivered"][: rng.randint(2, 4)]
        previous: str | None = None
        for k, status in enumerate(steps):
            at = created + timedelta(minutes=20 * k, milliseconds=rng.randrange(1000))
            add(
                "easypost",
                e := ids.stripe("evt"),
                tracker_event(e, trk, code, status, previous, at, created),
                object_id=trk,
            )
            previous = status

    event_no = 10_000 + rng.randrange(1000)
    for cid in contact_ids:
        for prop, value in (
            ("lifecyclestage", rng.choice(["opportunity", "customer"])),
            ("firstname", rng.choice(["Ada", "Grace", "Linus", "Barbara"])),
        ):
            event_no += 1
            occurred = now - timedelta(minutes=rng.randrange(5, 60), milliseconds=rng.randrange(1000))
            add("hubspot", str(event_no), hubspot_change(event_no, cid, prop, value, occurred), object_id=cid)
    if contact_ids:
        event_no += 1
        add(
            "hubspot",
            str(event_no),
            hubspot_change(event_no, "999999991", "lifecyclestage", "lead", now - timedelta(minutes=3)),
            expect="dead_letter:unknown_object",
            object_id="999999991",
        )
        event_no += 1
        add(
            "hubspot",
            str(event_no),
            hubspot_change(event_no, contact_ids[0], "favourite_colour", "teal", now - timedelta(minutes=2)),
            expect="dead_letter:unknown_property",
            object_id=contact_ids[0],
        )

    if poison:
        add(
            "stripe",
            e := ids.stripe("evt"),
            stripe_event(
                e,
                "customer.created",
                {"id": "cus_demo_new", "object": "customer", "email": None, "created": start},
                start + 5,
            ),
            expect="dead_letter:unknown_event_type",
        )
        pi = ids.stripe("pi")
        add(
            "stripe",
            e := ids.stripe("evt"),
            stripe_event(
                e,
                "payment_intent.requires_reconfirmation",
                payment_intent(
                    pi, 500, "usd", "requires_reconfirmation", start, customer=None, charge=None, metadata={}
                ),
                start + 9,
            ),
            expect="dead_letter:unknown_value",
            object_id=pi,
        )

    deliveries = list(events)
    for ev in events:
        if rng.random() < duplicate_rate:
            deliveries.extend([ev] * rng.choice([1, 1, 2]))
    rng.shuffle(deliveries)
    expected = {
        "events": len(events),
        "deliveries": len(deliveries),
        "duplicates": len(deliveries) - len(events),
        "dead_letters": dict(Counter(ev.expect.split(":", 1)[1] for ev in events if ev.expect != "apply")),
        "payment_intents_final": dict(Counter(final_pi.values())),
    }
    return EventSample(events, deliveries, expected)


def signed_request(
    event: SampleEvent,
    secrets: dict[str, str] | None = None,
    *,
    base_url: str = RECEIVER_URL,
    now: float | None = None,
) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) exactly as the provider would POST ``event`` to the receiver at ``base_url``."""
    secrets = secrets or DEMO_SECRETS
    body = event.body()
    now = time.time() if now is None else now
    path = f"/webhooks/{event.provider}"
    headers = {"content-type": "application/json"}
    if event.provider == "stripe":
        headers["stripe-signature"] = stripe.sign(
            body, secrets["STRIPE_WEBHOOK_SECRET"].split(",")[0], int(now)
        )
    elif event.provider == "hubspot":
        ts = int(now * 1000)
        headers["x-hubspot-request-timestamp"] = str(ts)
        headers["x-hubspot-signature-v3"] = hubspot.sign(
            "POST", base_url + path, body, ts, secrets["HUBSPOT_CLIENT_SECRET"]
        )
        headers["x-hubspot-signature-version"] = "v3"
    else:
        headers["x-hmac-signature"] = easypost.sign(body, secrets["EASYPOST_WEBHOOK_SECRET"])
    return path, body, headers


def post_events(
    deliveries: Sequence[SampleEvent],
    queue_factory: Callable[[], Any],
    *,
    secrets: dict[str, str] | None = None,
    concurrency: int = 16,
) -> Counter[int]:
    """POST every delivery, signed, to the real receiver app in-process (httpx ASGI transport), which verifies
    it and enqueues it durably on the queue ``queue_factory`` builds. Returns the count per HTTP status."""
    secrets = secrets or DEMO_SECRETS
    config = WebhookConfig(
        secrets={
            "stripe": parse_secrets(secrets["STRIPE_WEBHOOK_SECRET"]),
            "hubspot": (secrets["HUBSPOT_CLIENT_SECRET"],),
            "easypost": (secrets["EASYPOST_WEBHOOK_SECRET"],),
        },
        public_url=RECEIVER_URL,
    )
    app = create_app(queue_factory=queue_factory, config=config)
    statuses: Counter[int] = Counter()

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=RECEIVER_URL) as client:
                gate = asyncio.Semaphore(concurrency)

                async def one(ev: SampleEvent) -> None:
                    path, body, headers = signed_request(ev, secrets)
                    async with gate:
                        response = await client.post(path, content=body, headers=headers)
                    statuses[response.status_code] += 1

                await asyncio.gather(*(one(ev) for ev in deliveries))

    asyncio.run(run())
    return statuses
