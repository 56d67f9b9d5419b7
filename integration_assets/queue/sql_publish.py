"""Publishing to the SQL queue: insert with dedup on the key, and tell a duplicate from a key collision.

``(queue_name, message_id)`` is unique and the insert is ``ON CONFLICT DO NOTHING``, so identical
re-deliveries of an event that is still pending (waiting, claimed or in backoff) collapse into one row,
counted as duplicates. A message whose key is taken by a pending row with *other* content (``queue.keys``
fingerprints) is a key collision: never dropped, it becomes a dead letter (check ``key_collision``) that the
caller records in the publish transaction. After the row is acked, the same id can be enqueued again; the
consumer's event-id ledger then tells a duplicate from a collision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace

import sqlalchemy as sa

from integration_assets.queue.base import Message, QueueDeadLetter
from integration_assets.queue.keys import collision_key, message_fingerprint
from integration_assets.warehouse.schema import event_queue


def queued_fingerprints(conn: sa.Connection, queue_name: str, ids: Sequence[str]) -> dict[str, str]:
    """Content fingerprints (``queue.keys``) of the messages among ``ids`` that are queued now."""
    if not ids:
        return {}
    if conn.dialect.name == "postgresql":
        # An array parameter (a list of a thousand placeholders costs more to build than to run), never a
        # prepared statement: a generic plan made while the queue was nearly empty would scan the whole
        # table once it has grown; a fresh plan uses the (queue_name, message_id) index.
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(
                "SELECT message_id, source, body, headers FROM event_queue "
                "WHERE queue_name = %s AND message_id = ANY(%s)",
                (queue_name, list(ids)),
                prepare=False,
            )
            found = cur.fetchall()
    else:
        found = [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    event_queue.c.message_id,
                    event_queue.c.source,
                    event_queue.c.body,
                    event_queue.c.headers,
                ).where(event_queue.c.queue_name == queue_name, event_queue.c.message_id.in_(list(ids)))
            )
        ]
    return {mid: message_fingerprint(bytes(body), json.loads(headers)) for mid, src, body, headers in found}


def collision(queue_name: str, m: Message, mine: str, theirs: str) -> QueueDeadLetter:
    """The dead letter of ``m``, whose key is queued with other content, under its own key."""
    return QueueDeadLetter.of(
        replace(m, id=collision_key(m.id, mine)),
        f"key {m.id} is already queued with other content (content {theirs[:12]}, this one {mine[:12]}): "
        "two different events under one key; the first is processed, this one is kept here",
        "key_collision",
        1,
        {"queue": queue_name, "backend": "sql", "stage": "publish"},
    )


def _insert_statement(pg: bool) -> sa.TextClause:
    # A plain executemany, whose rowcount is the number of rows inserted (SQLAlchemy's Core insert of many
    # rows reports -1 on psycopg, and RETURNING makes one statement of thousands of placeholders).
    now = "CAST(floor(extract(epoch FROM now()) * 1000) AS BIGINT)" if pg else str(int(time.time() * 1000))
    return sa.text(
        "INSERT INTO event_queue (queue_name, message_id, source, event_type, body, headers, received_at_ms, "
        f"enqueued_at_ms, visible_at_ms, attempts) VALUES (:queue_name, :message_id, :source, :event_type, "
        f":body, :headers, :received_at_ms, {now}, {now}, 0) ON CONFLICT (queue_name, message_id) DO NOTHING"
    ).bindparams(sa.bindparam("body", type_=event_queue.c.body.type))


def insert_messages(
    conn: sa.Connection, queue_name: str, messages: Sequence[Message]
) -> tuple[list[str], list[QueueDeadLetter]]:
    """Insert ``messages`` in ``conn``'s transaction; returns the source of each duplicate and the dead
    letters of the key collisions (for the caller to record in the same transaction)."""
    first: dict[str, Message] = {}
    repeated: list[Message] = []  # the same key twice in this publish
    for m in messages:
        if m.id in first:
            repeated.append(m)
        else:
            first[m.id] = m
    duplicates: list[str] = []
    collided: list[QueueDeadLetter] = []

    def compare(m: Message, theirs: str | None, mine: str | None = None) -> None:
        mine = mine or message_fingerprint(m.body, m.headers)
        if theirs is None or theirs == mine:  # None: acked meanwhile (the consumer's ledger decides then)
            duplicates.append(m.source)
        else:
            collided.append(collision(queue_name, m, mine, theirs))

    # The keys already queued (usually none: one indexed lookup), compared by content below.
    stored = queued_fingerprints(conn, queue_name, list(first))
    new = [m for mid, m in first.items() if mid not in stored]
    rows = [
        {
            "queue_name": queue_name,
            "message_id": m.id,
            "source": m.source,
            "event_type": m.event_type,
            "body": m.body,
            "headers": json.dumps(dict(m.headers), sort_keys=True),
            "received_at_ms": int(m.received_at.timestamp() * 1000),
        }
        for m in new
    ]
    stmt = _insert_statement(conn.dialect.name == "postgresql")
    inserted = conn.execute(stmt, rows).rowcount if rows else 0
    if inserted < len(new):
        # A concurrent publisher queued some of these keys in the meantime: other content is a
        # collision; equal content a duplicate (which of the equal copies is stored does not matter).
        raced = queued_fingerprints(conn, queue_name, [m.id for m in new])
        equal: list[str] = []
        for m in new:
            mine = message_fingerprint(m.body, m.headers)
            if raced.get(m.id, mine) == mine:
                equal.append(m.source)
            else:
                collided.append(collision(queue_name, m, mine, raced[m.id]))
        duplicates.extend(equal[: max(0, len(new) - inserted - len(collided))])
    for mid, m in first.items():
        if mid in stored:
            compare(m, stored[mid])
    for m in repeated:
        f = first[m.id]
        compare(m, stored.get(m.id) or message_fingerprint(f.body, f.headers))
    return duplicates, collided
