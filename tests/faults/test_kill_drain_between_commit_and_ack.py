"""RELIABILITY #2, the window between COMMIT and ack: a real ``kill -9`` of a drain process whose batch
has committed and whose ack has not been sent, then a drain again. And #3, the same kill inside the
batch's transaction (canonical rows merged, ledger rows about to be written, no COMMIT yet).

The point is found in our own code, not guessed: ``Applier.commit`` returns once the batch's
transaction has committed, and the ack (``settle``) follows it. The drain process runs the stock
``drain()`` with a wrapper around ``commit`` that, once the commit has returned, tells the test and waits;
the test then sends SIGKILL to that pid. On RabbitMQ the broker redelivers the whole batch (connection
gone, nothing acked): every redelivery must be a duplicate with no second effect (no canonical row
rewritten). On the SQL queue in the warehouse the ack is part of the same transaction, so the window does
not exist: nothing comes back. Killed before COMMIT, Postgres rolls the batch back and the redelivery
applies it once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.events.conftest import Stack
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import BOTH_QUEUES, drain_fresh, good_events, publish
from tests.support.waits import wait_for

N = 300
BATCH = 100

DRAIN = """
import os, sys, time
from pathlib import Path
from integration_assets.events import apply, ledger
from integration_assets.events.drain import drain
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse.db import get_engine

def wait_to_be_killed():
    Path({marker!r}).write_text(str(os.getpid()))
    time.sleep(60)  # the test kills us here
    os._exit(3)

if {point!r} == "after_commit":
    commit = apply.Applier.commit

    def committed_then_wait(self, *args, **kwargs):
        out = commit(self, *args, **kwargs)  # committed; the ack has not been sent
        wait_to_be_killed()

    apply.Applier.commit = committed_then_wait
else:

    def in_transaction_wait(self, *args, **kwargs):  # rows merged, ledger not written, no COMMIT
        wait_to_be_killed()

    ledger.LedgerStage.write = in_transaction_wait
drain({queue}, engine=get_engine({url!r}), batch_size={batch}, visibility_timeout_s=2.0)
sys.exit(4)  # never reached: the first batch waits to be killed
"""


@pytest.mark.parametrize("point", ["after_commit", "before_commit"])
@pytest.mark.parametrize("stack", BOTH_QUEUES, indirect=True)
def test_kill_drain_between_commit_and_ack(
    stack: Stack, point: str, tmp_path: Path, record: Callable[..., Figures]
) -> None:
    queue = stack.make_queue()
    ledger = EventLedger()
    publish(stack, queue, good_events(N, seed=2), ledger)
    marker = tmp_path / "committed"
    code = DRAIN.format(
        marker=str(marker), point=point, batch=BATCH, queue=stack.queue_source, url=stack.warehouse_url
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for(marker.exists, timeout_s=60), "the drain never reached the kill point"
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 at the point
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, (proc.stdout.read() if proc.stdout else b"")[-2000:]
    committed = len(stack.ledger())
    assert committed == (BATCH if point == "after_commit" else 0)  # the first batch, or nothing
    before = {r["source_id"]: (r["load_id"], r["row_hash"]) for r in stack.rows("payments")}
    # Restart. The killed drain had claimed the next batch ahead (SQL queue on Postgres): that claim lapses
    # after its visibility timeout (300 s by default, 2 s here to keep the test short); RabbitMQ requeues
    # everything unacked as soon as the connection is gone.
    queue.close()
    redelivered = duplicates = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until every event is in the ledger and a drain finds nothing
        r = drain_fresh(stack, wait_s=0.5, visibility_timeout_s=5.0)
        redelivered += r.totals.events_in
        duplicates += r.totals.duplicates
        if r.totals.events_in == 0 and len(stack.ledger()) >= N:
            break
    probe = stack.make_queue()
    assert probe.depth() == 0
    probe.close()
    if stack.name.startswith("rabbitmq") and point == "after_commit":
        assert duplicates >= committed  # the whole committed batch came back, and was recognised
    after = {r["source_id"]: (r["load_id"], r["row_hash"]) for r in stack.rows("payments")}
    rewritten = sum(1 for k, v in before.items() if after.get(k) != v)
    scenario = (
        "kill -9 between commit and ack"
        if point == "after_commit"
        else "kill -9 inside the batch transaction"
    )
    fig = account_events(
        stack.engine,
        ledger,
        scenario,
        tables=["payments", "shipment_events"],
        rewritten=rewritten,
        backend=stack.name,
    )
    fig.notes.append(
        f"{committed} committed before the kill; {redelivered} delivered after, {duplicates} duplicates"
    )
    record(fig, applied=N, dead_lettered=0)
