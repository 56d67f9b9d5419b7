"""Producers of the fault scenarios: events built by the providers' wire formats (via the receiver's own
message code), each send written to the producer's ledger, and signed HTTP deliveries to a receiver."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import pytest

from integration_assets.queue import Message, Queue
from integration_assets.sandbox.events import SampleEvent
from tests.events.conftest import Stack, charge_event, messages_of, pi_event, tracker
from tests.faults.accounting import EventLedger

# Both queues, each in front of a real PostgreSQL warehouse.
BOTH_QUEUES = [
    pytest.param("sql-postgres", marks=pytest.mark.postgres),
    pytest.param("rabbitmq-postgres", marks=[pytest.mark.postgres, pytest.mark.rabbitmq]),
]


def good_events(n: int, seed: int = 1) -> list[SampleEvent]:
    """``n`` distinct events, each the only one of its object (so each is exactly one effect)."""
    rng = random.Random(seed)
    out: list[SampleEvent] = []
    for i in range(n):
        kind = i % 10
        if kind < 6:
            out.append(pi_event(i, rng.choice(["succeeded", "processing", "requires_action"])))
        elif kind < 8:
            out.append(charge_event(i))
        else:
            out.append(tracker(i))
    return out


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def keyed(items: Sequence[SampleEvent | Message]) -> list[tuple[str, Message]]:
    """(identity, message) per message; the identity of a sample event is its id plus its body, so that
    two different events that share a provider id stay two."""
    out: list[tuple[str, Message]] = []
    for it in items:
        if isinstance(it, Message):
            out.append((f"{it.id}|{_digest(it.body)}", it))
            continue
        for m in messages_of(it):
            out.append((f"{m.id}|{_digest(m.body)}", m))
    return out


def publish(stack: Stack, queue: Queue, items: Sequence[SampleEvent | Message], ledger: EventLedger) -> None:
    """Publish (confirmed by the queue) and write each send to the ledger."""
    pairs = keyed(items)
    for start in range(0, len(pairs), 200):
        part = pairs[start : start + 200]
        queue.publish_many([m for _, m in part])
        for identity, m in part:
            ledger.send(identity, m.id)


def drain_until_empty(stack: Stack, queue: Queue, *, max_rounds: int = 20, **kw: Any) -> list[Any]:
    """Drain until a drain takes nothing (bounded in rounds)."""
    reports = []
    for _ in range(max_rounds):
        r = stack.drain(queue, wait_s=kw.pop("wait_s", 0.5), **kw)
        reports.append(r)
        if r.totals.events_in == 0:
            break
    return reports


def stripe_body(n: int, prefix: str = "evt_f") -> tuple[str, bytes]:
    """A Stripe ``payment_intent.succeeded`` event (its id and raw body)."""
    ev = pi_event(n, "succeeded", evt=f"{prefix}{n:07d}")
    return ev.event_id, ev.body()


class Receiver:
    """The webhook receiver app (create_app) on the stack's queue, under a real uvicorn server, posted to
    with signed requests."""

    def __init__(self, stack: Stack) -> None:
        import contextlib

        import httpx

        from integration_assets.webhooks.app import create_app
        from tests.support.receiver import serving
        from tests.webhooks.conftest import test_config

        self._stack = contextlib.ExitStack()
        self.base = self._stack.enter_context(
            serving(create_app(queue_factory=stack.make_queue, config=test_config()))
        )
        self.client = self._stack.enter_context(httpx.Client(base_url=self.base, timeout=30))

    def post_hubspot(self, body: bytes) -> int:
        from tests.webhooks.conftest import hubspot_headers

        uri = f"{self.base}/webhooks/hubspot"
        return self.client.post(
            "/webhooks/hubspot", content=body, headers=hubspot_headers(body, uri=uri)
        ).status_code

    def post_stripe(self, body: bytes) -> int:
        from tests.webhooks.conftest import stripe_headers

        return self.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body)).status_code

    def close(self) -> None:
        self._stack.close()


def hubspot_keys(elements: list[Any]) -> list[tuple[str, str]]:
    """(identity, key) per element of a HubSpot batch, keys as the receiver's own code builds them."""
    import json

    from integration_assets.providers import PROVIDERS
    from integration_assets.webhooks.receive import provider_messages
    from tests.events.conftest import NOW

    doc, headers = json.loads(json.dumps(elements)), {"content-type": "application/json"}
    msgs = provider_messages(PROVIDERS["hubspot"], doc, b"", headers, NOW)
    assert len(msgs) == len(elements)
    return [
        (f"{m.id}|{_digest(json.dumps(e, sort_keys=True).encode())}", m.id)
        for m, e in zip(msgs, elements, strict=True)
    ]


def drain_fresh(stack: Stack, wait_s: float = 0.5, **kw: Any) -> Any:
    """One drain on a queue opened for it and closed after it, as a drain run does (on RabbitMQ, deliveries
    it prefetched and did not take go back to the queue)."""
    queue = stack.make_queue()
    try:
        return stack.drain(queue, wait_s=wait_s, **kw)
    finally:
        queue.close()
