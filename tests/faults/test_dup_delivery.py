"""RELIABILITY #1, dup-delivery: every event sent twice, 10% three times, shuffled, on both queues, drained
between slices so that later copies meet events already applied. N effects, the copies counted as
duplicates, nothing dead-lettered."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.events.conftest import Stack
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, good_events, publish

N = 400


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_dup_delivery(stack: Stack, record: Callable[..., Figures]) -> None:
    rng = random.Random(11)
    events = good_events(N)
    deliveries = [e for e in events for _ in range(3 if rng.random() < 0.1 else 2)]
    rng.shuffle(deliveries)
    queue = stack.make_queue()
    ledger = EventLedger()
    duplicates_counted = 0
    for start in range(0, len(deliveries), 150):
        publish(stack, queue, deliveries[start : start + 150], ledger)
        report = stack.drain(queue, batch_size=100)
        assert report.balanced and not report.outage, report.as_dict()
        duplicates_counted += report.totals.duplicates
    last = stack.drain(queue, wait_s=0.5)
    duplicates_counted += last.totals.duplicates
    assert queue.depth() == 0
    fig = account_events(
        stack.engine, ledger, "dup-delivery", tables=["payments", "shipment_events"], backend=stack.name
    )
    fig.notes.append(
        f"{ledger.attempts} deliveries, {duplicates_counted} counted as duplicates by the drains"
    )
    record(fig, applied=N, dead_lettered=0)
    # Every copy past the first is either counted by a drain or collapsed by the queue while still pending.
    assert duplicates_counted <= ledger.attempts - N
    assert len(stack.rows("payments")) == sum(1 for e in events if e.provider == "stripe")
