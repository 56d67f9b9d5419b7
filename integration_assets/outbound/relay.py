"""The relay: outbox rows → the step queues, at least once, in order per chain (docs/ARCHITECTURE.md,
"The outbound flow").

It reads unsent rows in id order, publishes them to their step's queue (one queue per step:
``outbound.<step>``) and marks them sent once the queue confirmed them. A crash between the publish and the
mark publishes the rows again on the next run: the SQL queue stores a message whose key is still queued once,
and a step that meets a message whose write is already in the ledger counts a duplicate and calls nothing.

One relay at a time per warehouse (a Postgres advisory lock; on SQLite a lock file next to the database), so
two relays never publish a chain's messages in two orders.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from integration_assets.queue import Message, Queue
from integration_assets.warehouse import outbox
from integration_assets.warehouse.db import begin_write

SOURCE = "outbound"  # the queue messages' source (a name, not a provider)
OUTBOX_ID_HEADER = "x-outbox-id"
_LOCK_KEY = (1869967200, 1919249516)  # pg_advisory_lock(int, int): "outb", "rela" as ints
_local_lock = threading.Lock()


@dataclass
class RelayReport:
    published: int = 0
    marked_only: int = 0  # markers with no step (deal.reopened): marked sent, not published
    by_step: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"published": self.published, "marked_only": self.marked_only, "by_step": dict(self.by_step)}


def to_message(row: outbox.UnsentRow) -> Message:
    """The queue message of an outbox row: its key is the message id, its body the ``OutboxMessage`` JSON."""
    body = json.dumps(
        {
            "key": row.key,
            "topic": row.topic,
            "step": row.step,
            "chain_id": row.chain_id,
            "payload": json.loads(row.payload),
        },
        sort_keys=True,
    ).encode()
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Message(
        id=row.key,
        source=SOURCE,
        event_type=row.topic,
        body=body,
        headers={OUTBOX_ID_HEADER: str(row.id), "x-chain-id": row.chain_id},
        received_at=created,
    )


@contextlib.contextmanager
def relay_lock(engine: sa.Engine) -> Iterator[None]:
    """Held while one relay runs against ``engine``'s warehouse (waits for another relay to finish)."""
    with _local_lock:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(
                    sa.text("SELECT pg_advisory_lock(:a, :b)"), {"a": _LOCK_KEY[0], "b": _LOCK_KEY[1]}
                )
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:a, :b)"), {"a": _LOCK_KEY[0], "b": _LOCK_KEY[1]}
                    )
                    conn.commit()
            return
        db = engine.url.database
        if not db or db == ":memory:":
            yield
            return
        with open(Path(db).with_name(Path(db).name + ".outbox-relay.lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def relay(
    engine: sa.Engine,
    *,
    queue_url: str | None = None,
    limit: int = 1000,
    queues: dict[str, Queue] | None = None,
    hook: Callable[[str, list[int]], None] | None = None,
) -> RelayReport:
    """Publish every unsent outbox row (``limit`` per round) to its step's queue and mark it sent.

    ``queues``: step -> an open queue to publish to (default: ``runner.open_step_queue`` per step, closed at
    the end). A failure to publish leaves the rows unsent (counted in ``attempts``) and raises. ``hook`` is
    called with ``"after_publish"`` and the published outbox ids before they are marked (tests raise from it
    to simulate a crash there)."""
    from integration_assets.outbound.runner import open_step_queue  # the runner opens queues the same way

    report = RelayReport()
    opened: dict[str, Queue] = {}
    given = queues or {}

    def queue_of(step: str) -> Queue:
        if step in given:
            return given[step]
        if step not in opened:
            opened[step] = open_step_queue(step, queue_url, engine=engine)
        return opened[step]

    try:
        with relay_lock(engine):
            while True:
                with engine.connect() as conn:
                    rows = outbox.claim_unsent(conn, limit)
                if not rows:
                    break
                marked: list[int] = []
                # Consecutive rows of one step go in one publish; a step change starts the next publish, so
                # the publish order is the id order across steps too.
                run: list[outbox.UnsentRow] = []
                for row in [*rows, None]:
                    if row is not None and (not run or run[0].step == row.step):
                        run.append(row)
                        continue
                    if run:
                        step = run[0].step
                        if step:
                            try:
                                queue_of(step).publish_many([to_message(r) for r in run])
                            except Exception:
                                with begin_write(engine) as conn:
                                    outbox.mark_sent(conn, marked)
                                    outbox.mark_attempt_failed(conn, [r.id for r in run])
                                raise
                            report.published += len(run)
                            report.by_step[step] = report.by_step.get(step, 0) + len(run)
                        else:
                            report.marked_only += len(run)
                        marked.extend(r.id for r in run)
                    run = [row] if row is not None else []
                if hook:
                    hook("after_publish", marked)
                with begin_write(engine) as conn:
                    outbox.mark_sent(conn, marked)
                if len(rows) < limit:
                    break
    finally:
        for q in opened.values():
            q.close()
    return report


def unsent_count(engine: sa.Engine) -> tuple[int, datetime | None]:
    """Unsent outbox rows and the oldest one's capture time (for backlogs)."""
    with engine.connect() as conn:
        n, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(outbox.outbox.c.created_at)).where(
                outbox.outbox.c.sent_at.is_(None)
            )
        ).one()
    if isinstance(oldest, datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(n), oldest
