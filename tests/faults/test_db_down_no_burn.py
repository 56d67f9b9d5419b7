"""RELIABILITY #9, db-down-no-burn: the warehouse unreachable (a TCP proxy of the test refuses and cuts
its connections) while a drain runs, then back, on both queues. Consumption pauses, no attempt is spent
(max_attempts=1 would dead-letter on the first), nothing is dead-lettered, everything applies after."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from integration_assets.events.drain import drain
from integration_assets.warehouse.db import get_engine
from tests.events.conftest import Stack
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, good_events, publish
from tests.support.tcp_proxy import TcpProxy

N = 300


@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_db_down_no_burn(stack: Stack, pg_proxy: TcpProxy, record: Callable[..., Figures]) -> None:
    queue = stack.make_queue(max_attempts=1)  # a single spent attempt would dead-letter the event
    ledger = EventLedger()
    publish(stack, queue, good_events(N, seed=9), ledger)
    engine = get_engine(pg_proxy.url_for(stack.warehouse_url))
    pg_proxy.down()
    # First drain: the outage outlasts its budget; it gives its batches back without spending attempts.
    first = drain(queue, engine=engine, batch_size=100, transient_budget_s=0.5)
    assert first.outage and first.totals.applied == 0 and first.totals.dead_lettered == 0, first.as_dict()
    # Second drain: started during the outage, the warehouse comes back 2 s later, inside its budget.
    threading.Timer(2.0, lambda: setattr(pg_proxy, "up", True)).start()
    applied = 0
    deadline = time.monotonic() + 60
    while applied < N and time.monotonic() < deadline:
        r = drain(queue, engine=engine, batch_size=100, transient_budget_s=30, wait_s=1.0)
        assert r.totals.dead_lettered == 0 and r.balanced, r.as_dict()
        applied += r.totals.applied
    assert queue.depth() == 0 and stack.dead_letters() == []
    fig = account_events(
        stack.engine, ledger, "db-down-no-burn", tables=["payments", "shipment_events"], backend=stack.name
    )
    record(fig, applied=N, dead_lettered=0)
