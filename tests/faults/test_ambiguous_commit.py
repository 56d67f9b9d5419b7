"""RELIABILITY #8, ambiguous commit: a batch's COMMIT succeeds on the server, but the drain never hears
so (the connection breaks while the answer is in flight) and sees the warehouse as unavailable. It
retries the batch, on both queues: the retry must find every event already in the ledger (duplicates),
write no second effect and rewrite no row, then ack."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from integration_assets.events import apply
from integration_assets.events.errors import WarehouseUnavailable
from tests.events.conftest import Stack
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, drain_fresh, good_events, publish

N, BATCH = 300, 100


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_ambiguous_commit(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, record: Callable[..., Figures]
) -> None:
    queue = stack.make_queue()
    ledger = EventLedger()
    publish(stack, queue, good_events(N, seed=8), ledger)
    queue.close()
    commit = apply.Applier.commit
    seen: dict[str, object] = {}

    def commit_then_lose_the_answer(self, deliveries, batch_id, **kwargs):  # type: ignore[no-untyped-def]
        out = commit(self, deliveries, batch_id, **kwargs)
        if not seen:  # the first batch: committed, but the answer never arrives
            seen["rows"] = {r["source_id"]: (r["load_id"], r["row_hash"]) for r in stack.rows("payments")}
            seen["ledger"] = len(stack.ledger())
            raise WarehouseUnavailable("connection lost while the COMMIT's answer was in flight")
        return out

    monkeypatch.setattr(apply.Applier, "commit", commit_then_lose_the_answer)
    report = drain_fresh(stack, batch_size=BATCH)
    assert seen and seen["ledger"] == BATCH, seen.get("ledger")
    assert report.balanced and not report.outage, report.as_dict()
    assert report.totals.duplicates == BATCH  # the retried batch: all already there
    assert report.totals.applied == N - BATCH
    monkeypatch.setattr(apply.Applier, "commit", commit)
    assert drain_fresh(stack).totals.events_in == 0
    after = {r["source_id"]: (r["load_id"], r["row_hash"]) for r in stack.rows("payments")}
    before = seen["rows"]
    assert isinstance(before, dict)
    rewritten = sum(1 for k, v in before.items() if after.get(k) != v)
    fig = account_events(
        stack.engine,
        ledger,
        "ambiguous commit (answer lost after COMMIT)",
        tables=["payments", "shipment_events"],
        rewritten=rewritten,
        backend=stack.name,
    )
    fig.notes.append(
        f"first batch of {BATCH} committed, reported unavailable, retried: {report.totals.duplicates} duplicates"
    )
    record(fig, applied=N, dead_lettered=0)
