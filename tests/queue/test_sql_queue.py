"""The embedded SQL queue: claims, visibility timeouts, collapse of pending duplicates, concurrency."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.queue import (
    InvalidMessage,
    Message,
    QueueConfigError,
    QueueUnavailable,
    StaleDelivery,
    backoff_delay,
    open_queue,
)
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import event_queue
from tests.support.waits import wait_for

from .conftest import SINK, closed_port, dead_letter_rows, message


def test_visibility_timeout_makes_an_unsettled_message_visible_again(sql_warehouse: str) -> None:
    q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="vt")
    q.publish(message(1))
    [first] = q.receive(1, visibility_timeout_s=0.3)
    assert q.receive(1, visibility_timeout_s=0.3) == []  # still invisible
    [second] = wait_for(lambda: q.receive(1, visibility_timeout_s=30))  # visible again once the 0.3 s lapse
    assert second.message.id == first.message.id and second.attempts == 2 and second.redelivered
    # The first consumer's claim was taken over: it can no longer retry or dead-letter...
    with pytest.raises(StaleDelivery):
        q.retry(first, "late", delay_s=0)
    with pytest.raises(StaleDelivery):
        q.dead_letter(first, "late", "contract")
    assert dead_letter_rows(sql_warehouse) == []
    # ...but its ack still counts (its effect was committed; the second run will be a no-op).
    q.ack([first])
    assert q.depth() == 0


def test_pending_duplicates_collapse_but_a_later_redelivery_is_enqueued(sql_warehouse: str) -> None:
    q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="dups")
    q.publish_many([message(1), message(1), message(2)])
    q.publish(message(1))
    assert q.depth() == 2
    got = q.receive(10)
    assert sorted(d.message.id for d in got) == ["stripe:evt_1", "stripe:evt_2"]
    q.ack(got)
    q.publish(message(1))  # after the ack: the consumer's event-id ledger deduplicates it
    assert q.depth() == 1


def test_queues_sharing_the_table_are_isolated(sql_warehouse: str) -> None:
    a, b = (
        SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="a"),
        SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="b"),
    )
    a.publish(message(1))
    b.publish(message(1))
    assert a.depth() == b.depth() == 1
    a.ack(a.receive(10))
    assert (a.depth(), b.depth()) == (0, 1)


def test_concurrent_consumers_claim_disjoint_messages(sql_warehouse: str) -> None:
    n = 300
    SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="conc").publish_many([message(i) for i in range(n)])
    seen: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def consume() -> None:
        q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="conc")
        try:
            while batch := q.receive(7, visibility_timeout_s=60):
                with lock:
                    seen.extend(d.message.id for d in batch)
                q.ack(batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(seen) == n and len(set(seen)) == n  # every message exactly once, no double claims
    assert SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="conc").depth() == 0


def test_ack_can_join_the_consumers_transaction(sql_warehouse: str) -> None:
    q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="tx")
    q.publish(message(1))
    [d] = q.receive(1)
    engine = get_engine(sql_warehouse)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        q.ack([d], connection=conn)
        raise RuntimeError("effect failed: the ack rolls back with it")
    assert q.depth() == 1
    with engine.begin() as conn:
        q.ack([d], connection=conn)
    assert q.depth() == 0


def test_retry_without_delay_uses_capped_backoff(sql_warehouse: str) -> None:
    q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="bo", backoff_base_s=10, backoff_cap_s=10)
    q.publish(message(1))
    [d] = q.receive(1)
    assert q.retry(d, "timeout") == "retried"
    with get_engine(sql_warehouse).connect() as conn:
        row = conn.execute(sa.select(event_queue.c.visible_at_ms, event_queue.c.last_error)).one()
    delay_s = row.visible_at_ms / 1000 - time.time()
    assert 4 <= delay_s <= 10.5 and row.last_error == "timeout"


def test_unreachable_postgres_is_transient(isolated_env: Path) -> None:
    q = SqlQueue(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nowhere", name="down")
    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        q.publish(message(1))
    with pytest.raises(QueueUnavailable):
        q.receive(1)
    assert time.monotonic() - started < 5


def test_unmigrated_warehouse_is_a_config_error(isolated_env: Path) -> None:
    q = SqlQueue(f"sqlite:///{isolated_env / 'empty.db'}", name="x")
    with pytest.raises(QueueConfigError, match="db upgrade"):
        q.publish(message(1))


def test_message_invariants() -> None:
    with pytest.raises(InvalidMessage):
        Message(id="", source="stripe", event_type="x", body=b"{}")
    with pytest.raises(InvalidMessage):
        Message(id="odoo:1", source="Odoo ERP", event_type="x", body=b"{}")  # not a provider name
    with pytest.raises(InvalidMessage):
        Message(id="stripe:evt_1", source="stripe", event_type="x", body="{}")  # type: ignore[arg-type]
    with pytest.raises(InvalidMessage):
        Message(id="stripe:evt_1", source="stripe", event_type="x", body=b"{}", headers={"a": 1})  # type: ignore[dict-item]


def test_backoff_is_capped_exponential_with_jitter() -> None:
    assert backoff_delay(1, base_s=2, rng=lambda: 0.0) == 1.0
    assert backoff_delay(1, base_s=2, rng=lambda: 1.0) == 2.0
    assert backoff_delay(4, base_s=2, rng=lambda: 0.0) == 8.0
    assert backoff_delay(30, base_s=2, cap_s=600, rng=lambda: 1.0) == 600.0


def test_factory_picks_the_backend_from_the_url(sql_warehouse: str) -> None:
    default = open_queue()
    assert isinstance(default, SqlQueue) and default.name == "events"
    custom = open_queue("sql?name=webhooks&max_attempts=7")
    assert isinstance(custom, SqlQueue) and (custom.name, custom.max_attempts) == ("webhooks", 7)
    rabbit = open_queue(
        "amqp://guest:guest@127.0.0.1:5672/%2F?prefix=demo&max_attempts=4&prefetch=20&heartbeat=30"
    )
    assert isinstance(rabbit, RabbitMQQueue)
    assert (rabbit.config.prefix, rabbit.config.max_attempts, rabbit.config.prefetch) == ("demo", 4, 20)
    assert (
        rabbit.config.delivery_limit == 3
        and "prefix" not in rabbit.config.url
        and "heartbeat=30" in rabbit.config.url
    )
    for bad in ("redis://localhost", "sql?nope=1", "sql?max_attempts=many", "amqp://h/?max_attempts=0"):
        with pytest.raises(QueueConfigError):
            open_queue(bad)


def test_collisions_at_publish_are_dead_lettered_and_duplicates_counted(sql_warehouse: str) -> None:
    q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="keys")
    same, other = message(3), message(3, body=b'{"id":"evt_3","n":"other"}')
    q.publish_many([same, same, other])  # within one publish
    assert (q.last_publish.duplicates, q.last_publish.collisions) == (("stripe",), ("stripe",))
    q.publish_many([same, other])  # against the queued row
    assert (q.last_publish.duplicates, q.last_publish.collisions) == (("stripe",), ("stripe",))
    assert q.depth() == 1
    [row] = dead_letter_rows(sql_warehouse)  # one dead letter per colliding content, seen twice
    assert row["check_name"] == "key_collision" and row["natural_key"].startswith("stripe:evt_3#collision-")
    assert row["attempts"] == 2 and row["raw_record"] == other.body.decode()


def test_a_concurrent_publisher_of_the_key_with_other_content_is_a_collision(sql_warehouse: str) -> None:
    """The race: another transaction inserts the key after this publish looked for it and before its insert.
    The insert then does nothing; the rowcount tells, and the queued content decides."""
    if not sql_warehouse.startswith("postgresql"):
        pytest.skip("SQLite takes one writer at a time: a second writer cannot slip in between")
    q = SqlQueue(sql_warehouse, dead_letter_sink=SINK, name="race")
    mine, theirs = message(9), message(9, body=b'{"id":"evt_9","n":"theirs"}')
    engine = get_engine(sql_warehouse)
    outcome: list[object] = []
    with engine.connect() as other:
        tx = other.begin()
        other.execute(
            event_queue.insert().values(
                queue_name="race",
                message_id=theirs.id,
                source="stripe",
                event_type=theirs.event_type,
                body=theirs.body,
                headers="{}",
                received_at_ms=0,
                enqueued_at_ms=0,
                visible_at_ms=0,
                attempts=0,
            )
        )
        publisher = threading.Thread(target=lambda: (q.publish_many([mine]), outcome.append(q.last_publish)))
        publisher.start()

        def insert_waits() -> int:
            # A new transaction each time: pg_stat_activity is a snapshot per transaction.
            with engine.connect() as watch:  # until the publisher's insert waits for the row of `other`
                return int(
                    watch.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE 'INSERT INTO event_queue%'"
                        )
                    ).scalar_one()
                )

        assert wait_for(insert_waits, timeout_s=30, interval_s=0.02), (
            "the publisher never waited on the concurrent insert"
        )
        tx.commit()
    publisher.join(30)
    [result] = outcome
    assert (result.duplicates, result.collisions) == ((), ("stripe",))  # type: ignore[attr-defined]
    [row] = dead_letter_rows(sql_warehouse)
    assert row["check_name"] == "key_collision" and row["raw_record"] == mine.body.decode()
    [d] = q.receive(5)
    assert d.message.body == theirs.body
