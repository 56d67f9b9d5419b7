"""The subject's events in the queues: still waiting in the SQL queue table (deleted), or dead-lettered in
RabbitMQ's dead-letter queue (moved into ``dead_letters`` first, so they are erased there)."""

from __future__ import annotations

import json
import logging
import time

import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.erasure.audit import Erasure, ErasureUnavailable
from integration_assets.privacy.subjects import SourceFields, event_matches, event_values
from integration_assets.queue import QueueError
from integration_assets.queue.factory import open_queue
from integration_assets.settings import Settings
from integration_assets.warehouse.schema import event_queue

log = logging.getLogger(__name__)


def erase_queued_events(conn: sa.Connection, e: Erasure, skip: set[str], fields: SourceFields) -> None:
    """The subject's events still waiting in the SQL queue table: deleted (counted per store). Rows a drain
    holds right now are left to it: applied, they are suppressed; dead-lettered, their payload is erased
    on arrival (``privacy.suppress.erased_dead_letters``)."""
    q = event_queue
    if not sa.inspect(conn).has_table(q.name):
        return
    needle = e.subject.source_id.encode()
    if conn.dialect.name == "postgresql":
        contains = sa.text("position(CAST(:needle AS bytea) IN event_queue.body) > 0")
    else:
        contains = sa.text("instr(event_queue.body, :needle) > 0")
    rows = conn.execute(
        sa.select(q.c.id, q.c.message_id, q.c.body, q.c.claim_token, q.c.visible_at_ms).where(
            q.c.source == e.subject.system, contains.bindparams(needle=needle)
        )
    ).all()
    now_ms = int(time.time() * 1000)
    gone: list[int] = []
    for r in rows:
        try:
            doc = json.loads(bytes(r.body).decode("utf-8"))
        except ValueError:
            continue
        if r.message_id in skip or not event_matches(doc, e.subject):
            continue
        e.values |= event_values(doc, fields)
        if r.claim_token is not None and r.visible_at_ms > now_ms:
            e.stores["event_queue_in_flight"] += 1
            continue
        gone.append(int(r.id))
    e.stores["event_queue"] += len(gone)
    if gone and not e.dry_run:
        conn.execute(q.delete().where(q.c.id.in_(gone)))


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
