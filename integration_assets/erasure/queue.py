"""The subject's events in the queues: still waiting in the SQL queue table (deleted), or dead-lettered in
RabbitMQ's dead-letter queue (moved into ``dead_letters`` first, so they are erased there)."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.erasure.audit import Erasure, ErasureUnavailable
from integration_assets.privacy.subjects import SourceFields, event_matches, event_values
from integration_assets.queue import QueueError
from integration_assets.queue.factory import open_queue
from integration_assets.queue.sql_waiting import delete_events, events_containing
from integration_assets.settings import Settings

log = logging.getLogger(__name__)


def erase_queued_events(conn: sa.Connection, e: Erasure, skip: set[str], fields: SourceFields) -> None:
    """The subject's events still waiting in the SQL queue table: deleted (counted per store). Rows a drain
    holds right now are left to it: applied, they are suppressed; dead-lettered, their payload is erased
    on arrival (``privacy.suppress.erased_dead_letters``)."""
    gone: list[int] = []
    for r in events_containing(conn, e.subject.system, e.subject.source_id.encode()):
        try:
            doc = json.loads(r.body.decode("utf-8"))
        except ValueError:
            continue
        if r.message_id in skip or not event_matches(doc, e.subject):
            continue
        e.values |= event_values(doc, fields)
        if r.in_flight:
            e.stores["event_queue_in_flight"] += 1
            continue
        gone.append(r.id)
    e.stores["event_queue"] += len(gone)
    if gone and not e.dry_run:
        delete_events(conn, gone)


def move_broker_dead_letters(settings: Settings) -> None:
    """With RabbitMQ, dead-lettered events wait in the broker's dead-letter queue until a drain moves them into
    ``dead_letters``: move them now, so that the subject's are erased there (a queue message cannot be edited
    in place). Events still in the main queue are applied later and kept erased (``privacy.suppress``)."""
    if not settings.queue_url.startswith(("amqp://", "amqps://")):
        return
    queue = open_queue(
        settings.queue_url, warehouse_url=settings.warehouse_url, dead_letter_sink=write_event_dead_letters
    )
    try:
        moved = queue.drain_dead_letters()
    except QueueError as exc:
        raise ErasureUnavailable(
            f"the broker's dead letters could not be moved first ({type(exc).__name__}); "
            "nothing was erased: retry when RabbitMQ is reachable"
        ) from exc
    finally:
        queue.close()
    if moved:
        log.info("moved %d broker dead letter(s) into dead_letters before the erasure", moved)
