"""RELIABILITY #16, out-of-order: three versions of each object delivered in shuffled order across
drains, on both queues. The final row is the newest version; the older ones are recorded as stale."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from integration_assets.sandbox.events import SampleEvent
from tests.events.conftest import Stack, pi_event
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, publish

OBJECTS = 60
STATUSES = ["requires_action", "processing", "succeeded"]


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_out_of_order(stack: Stack, record: Callable[..., Figures]) -> None:
    rng = random.Random(16)
    versions: list[SampleEvent] = []
    for n in range(OBJECTS):
        for v, status in enumerate(STATUSES):
            versions.append(pi_event(n, status, created=1_790_000_000 + 100 * v, evt=f"evt_ooo{n:04d}v{v}"))
    rng.shuffle(versions)
    queue = stack.make_queue()
    ledger = EventLedger()
    for start in range(0, len(versions), 45):
        publish(stack, queue, versions[start : start + 45], ledger)
        assert stack.drain(queue, batch_size=20).balanced
    stack.drain(queue, wait_s=0.5)
    fig = account_events(stack.engine, ledger, "out-of-order", tables=["payments"], backend=stack.name)
    rows = stack.rows("payments")
    wrong = [r["source_id"] for r in rows if r["status"] != "succeeded"]
    fig.lost += len(wrong) + (OBJECTS - len(rows))  # the newest version not kept = a lost update
    outcomes = [r["outcome"] for r in stack.ledger()]
    assert outcomes.count("applied") + outcomes.count("stale") == 3 * OBJECTS
    assert outcomes.count("stale") >= 1  # the shuffle put an older version after a newer one somewhere
    record(fig, applied=3 * OBJECTS, dead_lettered=0)
