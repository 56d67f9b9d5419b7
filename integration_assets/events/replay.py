"""Replay event dead letters: put their stored payloads back on the queue, unchanged, under the same id.

A dead-lettered event (stage ``event``) keeps its body, its non-secret headers, its source, type and
message id. Replaying publishes it again (after a contract fix, once the unknown object has loaded, after a
crash loop), marks the dead letter ``replayed`` and writes the audit trail; the next drain applies it. If it
fails again, the queue writes the same dead-letter row back to ``pending`` with the new reason. Replaying
an event that was applied meanwhile is harmless: the ledger counts it as a duplicate.

The message is published before its dead letter is marked, so a crash in between replays it twice at worst
(a duplicate, absorbed by the ledger), never loses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from integration_assets.dead_letters import queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.queue import InvalidMessage, Message, Queue


@dataclass
class EventReplay:
    selected: int = 0
    replayed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "replayed": self.replayed,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
        }


def _received_at(headers: dict[str, Any], fallback: datetime) -> datetime:
    try:
        value = datetime.fromisoformat(str(headers.get("received_at")))
    except ValueError:
        value = fallback
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def message_of(row: dict[str, Any]) -> Message:
    """The queue message a dead-letter row was made from. Raises InvalidMessage when the row cannot be one
    (e.g. a broker dead letter without our headers)."""
    try:
        headers = json.loads(row["headers"] or "{}")
    except ValueError:
        headers = {}
    if not isinstance(headers, dict):
        headers = {}
    received_at = _received_at(headers, row["first_seen"])
    kept = {str(k): str(v) for k, v in headers.items() if k != "received_at"}
    return Message(
        id=row["natural_key"] or "",
        source=row["source_system"],
        event_type=row["entity"],
        body=(row["raw_record"] or "").encode("utf-8", errors="surrogateescape"),
        headers=kept,
        received_at=received_at,
    )


def replay_events(
    engine: sa.Engine, queue: Queue, flt: Filter, *, who: str | None = None, dry_run: bool = False
) -> EventReplay:
    """Re-enqueue the event dead letters selected by ``flt`` (stage ``event`` only; pending ones) on
    ``queue``; the public entry of ``dlq replay`` for event dead letters. Those not pending, or whose message
    cannot be rebuilt, are in ``skipped`` with the reason."""
    who = who or store.actor()
    if queue.dead_letter_sink is None:  # the SQL queue dead-letters a key collision at publish
        queue.dead_letter_sink = store.write_event_dead_letters
    flt = replace(flt, stage="event")
    out = EventReplay(dry_run=dry_run)
    with engine.connect() as conn:
        rows = queries.select(conn, flt)
    out.selected = len(rows)
    todo: list[tuple[int, Message]] = []
    for r in rows:
        if r["status"] != "pending":
            out.skipped[r["id"]] = f"status is {r['status']}"
            continue
        try:
            todo.append((r["id"], message_of(r)))
        except InvalidMessage as exc:
            out.skipped[r["id"]] = f"cannot rebuild the message: {exc}"
    if dry_run or not todo:
        out.replayed = [i for i, _ in todo] if dry_run else []
        return out
    for start in range(0, len(todo), 500):
        part = todo[start : start + 500]
        queue.publish_many([m for _, m in part])
        ids = [i for i, _ in part]
        with engine.begin() as conn:
            store.mark_replayed(conn, ids, f"re-enqueued by {who}", count_attempt=False, only_pending=True)
            store.audit(conn, ids, "replay", who, "replayed", detail=f"re-enqueued on {queue.backend} queue")
        out.replayed.extend(ids)
    return out
