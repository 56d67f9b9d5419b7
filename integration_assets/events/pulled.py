"""Apply events pulled from a provider's API (the Stripe events pull, issue 13 "webhook gap-fill") through the
same path as webhook deliveries, so a delivered and a pulled copy of one event apply once, in either order.

Why publish and drain rather than call ``events.apply`` directly: the drain (``events.drain``) is the one
code path that applies an event — the ``processed_events`` ledger in the effect's transaction, duplicates and
key collisions, stale versions, dead letters for events that fail their contract (an event already
dead-lettered by its webhook copy is recognised as the same one), a batch the warehouse refuses bisected to
the event at fault, transient warehouse failures retried. Anything else would be a second copy of that logic.
The pulled events go to a SQL queue of their own in the warehouse (``queue_name``, e.g. one per partition),
never to the webhook queue, so that

- the run drains only what it pulled (its counts are its own; the webhook drain's batches are untouched),
- the effect, the ledger rows and the ack commit in one transaction (the SQL queue lives in the warehouse),
- a run that died between publish and drain leaves its events queued under that name, and the re-run of the
  same partition publishes them again (the queue keeps one row per key) and drains them all.

Each pulled event gets exactly the key and content fingerprint the receiver gives the webhook delivery of
the same event (``providers``: ``stripe:evt_…``; ``queue.keys``, without the provider's volatile fields such
as ``pending_webhooks``), so the ledger sees one event.

Object snapshots (Stripe's PaymentIntent, charge and refund lists, for ranges whose events Stripe no longer
keeps) have no event: :func:`stripe_object_messages` wraps each object in an event-shaped record keyed
``stripe:pull:<object id>:<content digest>`` and dated at the listing (the object's state *as of then*), so
the same contracts map it, a re-pull of an unchanged object is a duplicate, and a later event still wins.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.events.drain import DrainReport, drain
from integration_assets.providers import PROVIDERS
from integration_assets.providers.base import PayloadError
from integration_assets.queue import REJECT_CHECK_HEADER, REJECT_REASON_HEADER, Message, open_queue
from integration_assets.queue.keys import CONTENT_HEADER, content_fingerprint

log = logging.getLogger(__name__)

ORIGIN_HEADER = "x-integration-origin"  # "pull": where the message came from (kept with a dead letter)
PUBLISH_CHUNK = 1_000
MAX_QUEUE_NAME = 64


def _body(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_messages(
    provider_name: str, docs: Iterable[Any], *, received_at: datetime | None = None, origin: str = "pull"
) -> list[Message]:
    """The queue messages of events pulled from ``provider_name``'s API: key and fingerprint as the
    receiver makes them for a webhook delivery (``webhooks.receive.provider_messages``). A record that is not
    an event is kept, keyed by its content and marked, so the drain dead-letters it (nothing is dropped)."""
    provider = PROVIDERS[provider_name]
    when = received_at or datetime.now(UTC)
    out: list[Message] = []
    for doc in docs:
        body = _body(doc)
        base = {"content-type": "application/json", ORIGIN_HEADER: origin}
        try:
            events = provider.events(doc, body)
        except PayloadError as exc:
            fingerprint = content_fingerprint(doc, provider.volatile_fields)
            headers = {
                **base,
                CONTENT_HEADER: fingerprint,
                REJECT_CHECK_HEADER: "invalid_payload",
                REJECT_REASON_HEADER: f"pulled record: {exc}",
            }
            key = f"{provider.name}:invalid:{fingerprint[:32]}"
            out.append(Message(key, provider.name, "invalid", body, headers, when))
            continue
        for event in events:
            fingerprint = content_fingerprint(event.doc, provider.volatile_fields)
            headers = {**base, **event.headers, CONTENT_HEADER: fingerprint}
            assert event.key is not None
            out.append(Message(event.key, provider.name, event.event_type, event.body, headers, when))
    return out


def stripe_object_messages(
    objects: Iterable[dict[str, Any]], *, as_of: int, received_at: datetime | None = None
) -> list[Message]:
    """Event-shaped messages for Stripe objects listed at ``as_of`` (epoch seconds): ``type`` is
    ``<object>.pulled``, ``created`` is ``as_of`` (the snapshot's time: an event of this object from before
    the listing is already in it, a later one wins), ``data.object`` the object. The key
    ``stripe:pull:<object id>:<digest>`` and the fingerprint depend on the object only, so listing an
    unchanged object again is a duplicate whatever ``as_of``."""
    when = received_at or datetime.now(UTC)
    out: list[Message] = []
    for obj in objects:
        fingerprint = content_fingerprint(obj)
        kind, object_id = str(obj.get("object") or "object"), str(obj.get("id") or "")
        digest = fingerprint[:16]
        doc = {
            "id": f"pull_{object_id}_{digest}",
            "object": "event",
            "created": as_of,
            "data": {"object": obj},
            "livemode": bool(obj.get("livemode", False)),
            "type": f"{kind}.pulled",
        }
        headers = {
            "content-type": "application/json",
            ORIGIN_HEADER: "pull_objects",
            CONTENT_HEADER: fingerprint,
        }
        key = f"stripe:pull:{object_id}:{digest}"[:255]
        out.append(Message(key, "stripe", f"{kind}.pulled"[:128], _body(doc), headers, when))
    return out


@dataclass
class PulledReport:
    """What applying one pull did: ``pulled`` messages; ``already_queued`` of them were still queued from an
    earlier run (stored once; drained now); the drain's totals (applied, duplicates = already applied
    through a webhook or an earlier pull, stale, ignored, dead-lettered); ``left_in_queue`` after the drain
    (0 unless events were given back: the run must then fail so the partition is pulled again)."""

    queue_name: str
    pulled: int
    already_queued: int
    collisions_at_publish: int
    drain: DrainReport
    left_in_queue: int

    @property
    def applied(self) -> int:
        return self.drain.totals.applied

    @property
    def duplicates(self) -> int:
        return self.drain.totals.duplicates

    @property
    def stale(self) -> int:
        return self.drain.totals.stale

    @property
    def ignored(self) -> int:
        return self.drain.totals.ignored

    @property
    def dead_lettered(self) -> int:
        return self.drain.totals.dead_lettered + self.collisions_at_publish

    def as_dict(self) -> dict[str, Any]:
        t = self.drain.totals
        return {
            "queue_name": self.queue_name,
            "events_pulled": self.pulled,
            "already_queued": self.already_queued,
            "events_drained": t.events_in,
            "applied": t.applied,
            "duplicates": t.duplicates,
            "stale": t.stale,
            "ignored": t.ignored,
            "dead_lettered": self.dead_lettered,
            "retried": t.retried,
            "left_in_queue": self.left_in_queue,
            "applied_per_table": dict(t.tables),
            "dead_letter_reasons": dict(t.reasons),
            "outage": self.drain.outage or "",
        }


def pull_queue_name(system: str, partition_key: str) -> str:
    """The SQL queue of one partition's pulled events, e.g. ``pull.stripe.2026-09-03``."""
    name = f"pull.{system}.{partition_key}"
    if len(name) > MAX_QUEUE_NAME:
        raise ValueError(f"queue name too long: {name!r}")
    return name


def apply_pulled(
    messages: Sequence[Message],
    *,
    engine: sa.Engine,
    queue_name: str,
    batch_size: int = 1_000,
    drain_id: str | None = None,
) -> PulledReport:
    """Publish ``messages`` to the warehouse's SQL queue ``queue_name`` and drain it (module docstring)."""
    url = engine.url.render_as_string(hide_password=False)
    queue = open_queue(f"sql?name={queue_name}", warehouse_url=url, dead_letter_sink=write_event_dead_letters)
    already, collisions = 0, 0
    try:
        for i in range(0, len(messages), PUBLISH_CHUNK):
            queue.publish_many(messages[i : i + PUBLISH_CHUNK])
            already += len(queue.last_publish.duplicates)
            collisions += len(queue.last_publish.collisions)
        report = drain(
            queue,
            engine=engine,
            max_events=max(1, len(messages) * 2 + 1_000),
            batch_size=batch_size,
            drain_id=drain_id,
        )
        left = queue.depth()
    finally:
        queue.close()
    result = PulledReport(queue_name, len(messages), already, collisions, report, left)
    log.info("pulled events applied through %s: %s", queue_name, result.as_dict())
    return result
