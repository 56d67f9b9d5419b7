"""RELIABILITY #31, batch-with-bad-element: a signed HubSpot delivery of 100 events, element 57 malformed
(no eventId), posted to the receiver, on both queues. The delivery is accepted (2xx); 99 events apply,
the bad one is dead-lettered with its reason; the same delivery again adds nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.events.conftest import Stack, hubspot_batch_with_a_bad_element
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, Receiver, drain_fresh, hubspot_keys


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_hubspot_batch_bad_element(stack: Stack, tmp_path: Path, record: Callable[..., Figures]) -> None:
    elements = hubspot_batch_with_a_bad_element(tmp_path, warehouse_url=stack.warehouse_url)
    body = json.dumps(elements).encode()
    receiver = Receiver(stack)
    ledger = EventLedger()
    try:
        for _ in range(2):  # delivered, then delivered again (a provider's retry)
            status = receiver.post_hubspot(body)
            assert 200 <= status < 300, status
            for identity, key in hubspot_keys(elements):
                ledger.send(identity, key)
            drain_fresh(stack)
    finally:
        receiver.close()
    drain_fresh(stack)
    [letter] = stack.dead_letters()
    assert "57" in letter["reason"]
    names = {r["source_id"]: r["first_name"] for r in stack.rows("contacts")}
    assert names["5000"] == "N0" and names["5057"] == "Old" and names["5099"] == "N99"
    fig = account_events(
        stack.engine,
        ledger,
        "HubSpot batch of 100 with a bad element",
        tables=["contacts"],
        backend=stack.name,
    )
    record(fig, applied=99, dead_lettered=1)
