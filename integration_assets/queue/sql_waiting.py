"""The SQL queue's waiting events looked up by content and removed outside a delivery: what the GDPR erasure
needs (``erasure/queue.py``). The queue package stays the only writer of ``event_queue``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from integration_assets.warehouse.schema import event_queue


@dataclass(frozen=True)
class QueuedEvent:
    id: int
    message_id: str
    body: bytes
    in_flight: bool  # a drain holds it right now (claimed, visibility not expired)


def events_containing(conn: sa.Connection, source: str, needle: bytes) -> list[QueuedEvent]:
    """The events of ``source`` whose body contains ``needle``, waiting or in flight; none without the table."""
    q = event_queue
    if not sa.inspect(conn).has_table(q.name):
        return []
    if conn.dialect.name == "postgresql":
        contains = sa.text("position(CAST(:needle AS bytea) IN event_queue.body) > 0")
    else:
        contains = sa.text("instr(event_queue.body, :needle) > 0")
    rows = conn.execute(
        sa.select(q.c.id, q.c.message_id, q.c.body, q.c.claim_token, q.c.visible_at_ms).where(
            q.c.source == source, contains.bindparams(needle=needle)
        )
    ).all()
    now_ms = int(time.time() * 1000)
    return [
        QueuedEvent(
            int(r.id), r.message_id, bytes(r.body), r.claim_token is not None and r.visible_at_ms > now_ms
        )
        for r in rows
    ]


def delete_events(conn: sa.Connection, ids: Sequence[int]) -> int:
    """Remove these events from the queue, in the caller's transaction. Returns how many were there."""
    if not ids:
        return 0
    return int(conn.execute(event_queue.delete().where(event_queue.c.id.in_(list(ids)))).rowcount)
