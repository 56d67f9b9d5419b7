"""Event-path fixtures: a real queue × a real warehouse, signed events, a TCP proxy that can take the
warehouse away, and seeded HubSpot contacts.

Combinations (``stack``): SQL queue × SQLite, SQL queue × Postgres, RabbitMQ × Postgres. Never a mock.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.events.drain import DrainReport, drain
from integration_assets.ingest.load import ingest_file
from integration_assets.providers import PROVIDERS
from integration_assets.providers.hubspot import event_key as hubspot_event_key
from integration_assets.queue import Message, Queue
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.queue.sql import SqlQueue
from integration_assets.sandbox.events import (
    SampleEvent,
    charge,
    hubspot_change,
    payment_intent,
    refund,
    stripe_event,
    tracker_event,
)
from integration_assets.warehouse import db
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters, event_queue, processed_events
from integration_assets.webhooks.receive import provider_messages
from tests.support.tcp_proxy import TcpProxy

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def messages_of(ev: SampleEvent) -> list[Message]:
    """The queue message(s) of an event, built by the receiver's own code from the signed body."""
    body = ev.body()
    doc = json.loads(body)
    headers = {"content-type": "application/json"}
    return provider_messages(PROVIDERS[ev.provider], doc, body, headers, NOW)


def corrupt(event_id: str) -> Message:
    """A message whose body is not JSON (a broken replay or a hand-made message: the receiver never
    enqueues one)."""
    return Message(
        id=event_id,
        source="stripe",
        event_type="payment_intent.succeeded",
        body=b"{not json",
        headers={},
        received_at=NOW,
    )


@dataclass
class Stack:
    """A queue backend and a warehouse, plus helpers over both."""

    name: str
    warehouse_url: str
    make_queue: Callable[..., Queue]
    queue_source: str = ""  # Python that builds the same queue, for a consumer in another process

    @property
    def engine(self) -> sa.Engine:
        return get_engine(self.warehouse_url)

    def publish(self, items: list[SampleEvent | Message], queue: Queue | None = None) -> None:
        msgs: list[Message] = []
        for it in items:
            msgs.extend(messages_of(it) if isinstance(it, SampleEvent) else [it])
        q = queue or self.make_queue()
        for start in range(0, len(msgs), 200):
            q.publish_many(msgs[start : start + 200])

    def drain(self, queue: Queue | None = None, **kw: Any) -> DrainReport:
        kw.setdefault("batch_size", 64)
        kw.setdefault("max_events", 100_000)
        return drain(queue or self.make_queue(), engine=kw.pop("engine", self.engine), **kw)

    def rows(self, table: str) -> list[dict[str, Any]]:
        t = CANONICAL_TABLES[table]
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.source_id))]

    def ledger(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(processed_events))]

    def redeliverable(self, queue: Queue) -> int:
        """What a new consumer would receive now: the ready messages on RabbitMQ; on the SQL queue, the rows
        whose claim (visibility timeout) has lapsed, by the clock the queue uses (the database's on Postgres)."""
        if not isinstance(queue, SqlQueue):
            return queue.depth()
        pg = self.engine.dialect.name == "postgresql"
        now_ms = sa.func.floor(sa.extract("epoch", sa.func.now()) * 1000) if pg else int(time.time() * 1000)
        q = event_queue.c
        stmt = sa.select(sa.func.count()).where(q.queue_name == queue.name, q.visible_at_ms <= now_ms)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def dead_letters(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(dead_letters).where(dead_letters.c.stage == "event").order_by(dead_letters.c.id)
                )
            ]


def amqp_queue_url(base: str, prefix: str, **options: Any) -> str:
    options = {"prefix": prefix, "retry_delays_s": "0.2,0.4", "reconnect_max_s": 2, **options}
    return base + ("&" if "?" in base else "?") + urlencode(options)


@pytest.fixture(
    params=[
        "sql-sqlite",
        pytest.param("sql-postgres", marks=pytest.mark.postgres),
        pytest.param("rabbitmq-postgres", marks=[pytest.mark.postgres, pytest.mark.rabbitmq]),
    ]
)
def stack(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    if request.param == "sql-sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        db.upgrade(url)
    else:
        from tests.conftest import _truncate_all

        url = request.getfixturevalue("pg_database")
        _truncate_all(url)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    name = f"t{uuid.uuid4().hex[:12]}"
    created: list[Queue] = []
    amqp = request.getfixturevalue("amqp_url") if request.param.startswith("rabbitmq") else None

    def make(max_attempts: int = 5, **options: Any) -> Queue:
        q: Queue
        if amqp is None:
            q = SqlQueue(url, name=name, max_attempts=max_attempts, **options)
        else:
            options.setdefault("prefetch", 500)
            q = RabbitMQQueue(
                amqp_queue_url(amqp, name, max_attempts=max_attempts, **options), warehouse_url=url
            )
        q.dead_letter_sink = write_event_dead_letters  # as the receiver and the drain open it
        created.append(q)
        return q

    if amqp is None:
        source = f"SqlQueue({url!r}, name={name!r})"
    else:
        source = f"RabbitMQQueue({amqp_queue_url(amqp, name, max_attempts=5, prefetch=500)!r}, warehouse_url={url!r})"
    yield Stack(request.param, url, make, source)
    for q in created:
        q.close()
    if amqp is not None:
        RabbitMQQueue(amqp_queue_url(amqp, name), warehouse_url=url).delete_topology()


# -- events ----------------------------------------------------------------------------------------------
def pi_event(
    n: int,
    status: str = "succeeded",
    *,
    created: int | None = None,
    pi: str | None = None,
    amount: int = 2000,
    currency: str = "usd",
    metadata: dict[str, str] | None = None,
    customer: str | None = "cus_known",
    evt: str | None = None,
) -> SampleEvent:
    pi = pi or f"pi_{n:06d}"
    created = created if created is not None else 1_790_000_000 + n
    evt = evt or f"evt_pi{n:06d}{status[:4]}{created}"
    return SampleEvent(
        "stripe",
        f"stripe:{evt}",
        stripe_event(
            evt,
            f"payment_intent.{status}",
            payment_intent(
                pi,
                amount,
                currency,
                status,
                created - 5,
                customer=customer,
                charge=None,
                metadata=metadata or {},
            ),
            created,
        ),
        object_id=pi,
    )


def charge_event(n: int) -> SampleEvent:
    evt, ch = f"evt_ch{n:06d}", f"ch_{n:06d}"
    return SampleEvent(
        "stripe",
        f"stripe:{evt}",
        stripe_event(
            evt,
            "charge.succeeded",
            charge(ch, f"pi_{n:06d}", 1500, "eur", 1_790_000_000, customer=None),
            1_790_000_000 + n,
        ),
        object_id=ch,
    )


def refund_event(n: int) -> SampleEvent:
    evt, re_ = f"evt_re{n:06d}", f"re_{n:06d}"
    return SampleEvent(
        "stripe",
        f"stripe:{evt}",
        stripe_event(
            evt,
            "refund.updated",
            refund(re_, f"ch_{n:06d}", f"pi_{n:06d}", 700, "gbp", "succeeded", 1_790_000_000),
            1_790_000_000 + n,
        ),
        object_id=re_,
    )


def tracker(
    n: int, status: str = "in_transit", *, at: datetime | None = None, evt: str | None = None
) -> SampleEvent:
    evt = evt or f"evt_tr{n:06d}{status}"
    at = at or NOW - timedelta(hours=1) + timedelta(seconds=n)
    return SampleEvent(
        "easypost",
        f"easypost:{evt}",
        tracker_event(evt, f"trk_{n:06d}", f"EZ{n:010d}", status, "pre_transit", at, NOW - timedelta(days=1)),
        object_id=f"trk_{n:06d}",
    )


def hubspot_event_id(key: str) -> str:
    """``hubspot:<eventId>`` of a HubSpot queue key ``hubspot:<eventId>:<digest>`` (queue.keys)."""
    parts = key.split(":")
    return ":".join(parts[:2]) if parts[0] == "hubspot" else key


def contact_change(
    event_id: int,
    contact: str,
    prop: str,
    value: str | None,
    occurred: datetime,
    subscription: str = "contact.propertyChange",
) -> SampleEvent:
    payload = hubspot_change(event_id, contact, prop, value, occurred, subscription)
    return SampleEvent("hubspot", hubspot_event_key(payload), payload, object_id=contact)


def seed_contacts(
    tmp_path: Path, ids: list[str], *, modified: datetime = NOW - timedelta(days=2), warehouse_url: str
) -> None:
    """HubSpot contacts in the warehouse, loaded by the real batch path (API contract, JSONL)."""
    path = tmp_path / "contacts.jsonl"
    stamp = modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with path.open("w") as fh:
        for i in ids:
            fh.write(
                json.dumps(
                    {
                        "id": i,
                        "properties": {
                            "email": f"c{i}@example.com",
                            "firstname": "Old",
                            "lastname": f"L{i}",
                            "lifecyclestage": "lead",
                            "lastmodifieddate": stamp,
                            "createdate": "2024-01-01T00:00:00.000Z",
                            "hs_object_id": i,
                        },
                    }
                )
                + "\n"
            )
    report = ingest_file(path, "hubspot", "contacts", engine=get_engine(warehouse_url))
    assert report.status == "succeeded" and report.rows_inserted == len(ids), report.as_dict()


def hubspot_batch_with_a_bad_element(tmp_path: Path, *, warehouse_url: str) -> list[Any]:
    """A HubSpot delivery of 100 first-name changes of seeded contacts 5000-5099 (first name "Old" before);
    element 57 is malformed (no eventId)."""
    ids = [str(5000 + i) for i in range(100)]
    seed_contacts(tmp_path, ids, warehouse_url=warehouse_url)
    elements: list[Any] = [
        hubspot_change(1000 + i, cid, "firstname", f"N{i}", NOW - timedelta(seconds=i))
        for i, cid in enumerate(ids)
    ]
    elements[57] = {
        "subscriptionType": "contact.propertyChange",
        "objectId": 5057,
        "propertyName": "firstname",
    }
    return elements


def seed_deals(tmp_path: Path, ids: list[str], *, warehouse_url: str) -> None:
    path = tmp_path / "deals.jsonl"
    with path.open("w") as fh:
        for i in ids:
            fh.write(
                json.dumps(
                    {
                        "id": i,
                        "properties": {
                            "dealname": f"Deal {i}",
                            "dealstage": "qualifiedtobuy",
                            "pipeline": "default",
                            "amount": "1500.00",
                            "hs_lastmodifieddate": "2026-11-20T10:00:00.000Z",
                            "createdate": "2026-11-01T00:00:00.000Z",
                        },
                    }
                )
                + "\n"
            )
    report = ingest_file(path, "hubspot", "deals", engine=get_engine(warehouse_url))
    assert report.status == "succeeded", report.as_dict()


# -- a warehouse that goes away --------------------------------------------------------------------------
FlakyProxy = TcpProxy  # in front of Postgres by default


@pytest.fixture
def flaky_pg() -> Iterator[FlakyProxy]:
    proxy = FlakyProxy()
    yield proxy
    proxy.close()
