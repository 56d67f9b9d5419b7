"""RELIABILITY #10, poison: 5% of the events are unparseable or schema-invalid, on both queues. The valid
ones apply, each poison event is dead-lettered exactly once with its reason, the main queue ends empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from integration_assets.queue import Message
from integration_assets.sandbox.events import SampleEvent
from tests.events.conftest import Stack, corrupt, pi_event
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, good_events, publish

N = 300


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_poison(stack: Stack, record: Callable[..., Figures]) -> None:
    items: list[SampleEvent | Message] = list(good_events(N - N // 20, seed=5))
    poison: dict[str, str] = {}
    for i in range(N // 20):
        if i % 2:
            m = corrupt(f"stripe:evt_poison{i:05d}")
            poison[m.id] = "unparseable"
            items.insert(i * 19, m)
        else:
            ev = pi_event(100_000 + i, "requires_reconfirmation")  # a status the contract does not know
            poison[ev.event_id] = "unknown_value"
            items.insert(i * 19, ev)
    queue = stack.make_queue()
    ledger = EventLedger()
    publish(stack, queue, items, ledger)
    publish(stack, queue, items[: N // 3], ledger)  # and some redeliveries, poison included
    for _ in range(5):
        report = stack.drain(queue, batch_size=128, wait_s=0.5)
        assert report.balanced, report.as_dict()
        if report.totals.events_in == 0:
            break
    assert queue.depth() == 0
    letters = stack.dead_letters()
    assert {r["natural_key"]: r["check_name"] for r in letters} == poison  # each exactly once, with its check
    assert all(r["reason"] for r in letters)
    fig = account_events(
        stack.engine, ledger, "poison", tables=["payments", "shipment_events"], backend=stack.name
    )
    record(fig, applied=N - len(poison), dead_lettered=len(poison))
