"""RELIABILITY #32, colliding-provider-ids: HubSpot's own test deliveries carry eventId 100 for different
events, and a Stripe event id can arrive with other content. Posted signed to the receiver, on both
queues: every different event is applied or dead-lettered on its own (none dropped as a "duplicate" of
another), a true redelivery is a duplicate, and a key collision with other content is dead-lettered,
never silent."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from integration_assets.sandbox.events import (
    HUBSPOT_TEST_CREATION,
    HUBSPOT_TEST_PROPERTY_CHANGE,
    hubspot_change,
)
from tests.events.conftest import NOW, Stack, pi_event, seed_contacts
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, Receiver, drain_fresh, hubspot_keys, keyed


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_colliding_hubspot_event_ids(stack: Stack, tmp_path: Path, record: Callable[..., Figures]) -> None:
    seed_contacts(tmp_path, ["123", "124"], warehouse_url=stack.warehouse_url)
    when = NOW - timedelta(minutes=1)
    first = hubspot_change(100, "123", "firstname", "Ada", when) | {"subscriptionId": 2902227}
    second = hubspot_change(100, "124", "lastname", "Lovelace", when) | {"subscriptionId": 2902227}
    retry = {**first, "attemptNumber": 1}  # HubSpot's retry of ``first``: the same event
    ledger = EventLedger()
    receiver = Receiver(stack)
    try:
        for batch in ([HUBSPOT_TEST_CREATION], [HUBSPOT_TEST_PROPERTY_CHANGE], [first, second], [retry]):
            assert receiver.post_hubspot(json.dumps(batch).encode()) == 200
            for (identity, key), element in zip(hubspot_keys(batch), batch, strict=True):
                # The retry is the same event as ``first`` (only attemptNumber differs).
                ledger.send(hubspot_keys([first])[0][0] if element is retry else identity, key)
            drain_fresh(stack)
        # Stripe: one event id, two contents. The second is a collision: dead-lettered, not dropped.
        original = pi_event(1, evt="evt_fcollide0001")
        other = pi_event(1, evt="evt_fcollide0001", amount=999_999)
        for ev in (original, other):
            assert receiver.post_stripe(ev.body()) == 200
            ledger.extend((identity, m.id) for identity, m in keyed([ev]))
            drain_fresh(stack)
    finally:
        receiver.close()
    drain_fresh(stack)
    rows = {r["source_id"]: r for r in stack.rows("contacts")}
    assert (rows["123"]["first_name"], rows["124"]["last_name"]) == ("Ada", "Lovelace")
    [payment] = stack.rows("payments")
    assert payment["amount"] == 2000
    fig = account_events(
        stack.engine,
        ledger,
        "colliding event ids (HubSpot eventId 100, Stripe evt_)",
        tables=["contacts", "payments"],
        backend=stack.name,
    )
    fig.notes.append(f"{ledger.attempts} deliveries of {len(ledger.events)} distinct events")
    # HubSpot: 2 applied (the changes), 2 dead-lettered (contact.creation: no handler; "message": no such
    # property); Stripe: 1 applied, 1 dead-lettered as a key collision.
    record(fig, applied=3, dead_lettered=3)
