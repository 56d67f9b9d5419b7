"""What every backend promises (SQL on SQLite and Postgres, RabbitMQ): run once per backend × warehouse."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from integration_assets.dead_letters.store import event_fingerprint
from integration_assets.queue import Queue, QueueConfigError, StaleDelivery
from integration_assets.warehouse.db import get_engine
from tests.support.waits import wait_for

from .conftest import dead_letter_rows, message, receive_n

pytestmark = pytest.mark.usefixtures("backend")


def _claim_again(q: Queue, backend: str, **kw: object) -> list:
    """Receive what a crashed consumer left behind: at once on RabbitMQ, after the visibility timeout on SQL."""
    return q.receive(10, visibility_timeout_s=0.2, wait_s=3.0 if backend.startswith("sql") else 2.0, **kw)  # type: ignore[arg-type]


def test_publish_receive_ack_round_trip(make_queue: Callable[..., Queue], backend: str) -> None:
    q = make_queue()
    sent = [message(i) for i in range(5)]
    q.publish_many(sent)
    assert q.depth() == 5
    age = q.oldest_age_seconds()  # RabbitMQ cannot peek at the head without counting a delivery: None
    assert age is None if backend == "rabbitmq" else age is not None and age >= 0

    got = receive_n(q, 5, visibility_timeout_s=30)
    held_age = q.oldest_age_seconds()
    assert held_age is not None and held_age >= 0
    assert [d.message.id for d in got] == [m.id for m in sent]  # FIFO for fresh messages
    first = got[0]
    assert first.message.body == sent[0].body
    assert first.message.source == "stripe" and first.message.event_type == "payment_intent.succeeded"
    assert dict(first.message.headers) == dict(sent[0].headers)
    assert abs((first.message.received_at - sent[0].received_at).total_seconds()) < 0.01
    assert first.attempts == 1 and not first.redelivered

    q.ack(got)
    assert q.depth() == 0
    assert q.oldest_age_seconds() == 0.0
    assert q.receive(10, wait_s=0.2) == []


def test_retry_backs_off_then_dead_letters_after_max_attempts(
    make_queue: Callable[..., Queue], warehouse: str
) -> None:
    q = make_queue(max_attempts=3)
    q.publish(message(7))
    seen = []
    outcome = None
    for attempt in (1, 2, 3):
        [d] = q.receive(1, visibility_timeout_s=30, wait_s=3)
        seen.append((d.attempts, d.redelivered))
        outcome = q.retry(d, f"warehouse timeout #{attempt}", delay_s=0.2)
        if outcome == "retried":
            # Backoff: not visible again at once.
            assert q.receive(1, wait_s=0) == []
    assert seen == [(1, False), (2, True), (3, True)]
    assert outcome == "dead_lettered"
    q.drain_dead_letters()
    assert q.depth() == 0

    [row] = dead_letter_rows(warehouse)
    assert row["stage"] == "event" and row["status"] == "pending"
    assert row["source_system"] == "stripe" and row["entity"] == "payment_intent.succeeded"
    assert row["natural_key"] == "stripe:evt_7" and row["fingerprint"] == event_fingerprint(
        "stripe", "stripe:evt_7"
    )
    assert row["check_name"] == "max_attempts" and "warehouse timeout #3" in row["reason"]
    assert row["attempts"] == 3
    assert json.loads(row["raw_record"]) == {"id": "evt_7", "n": "7"}
    headers = json.loads(row["headers"])
    assert headers["user-agent"] == "Stripe/1.0" and "received_at" in headers
    assert not any("signature" in k.lower() for k in headers)


def test_terminal_failure_is_dead_lettered_at_once(make_queue: Callable[..., Queue], warehouse: str) -> None:
    q = make_queue(max_attempts=5)
    q.publish_many([message(1), message(2)])
    d1, d2 = receive_n(q, 2)
    q.dead_letter(d1, "event type 'x.unknown' has no mapping contract", "unknown_event_type")
    q.ack([d2])
    q.drain_dead_letters()
    assert q.depth() == 0
    [row] = dead_letter_rows(warehouse)
    assert (row["natural_key"], row["check_name"], row["attempts"]) == (
        "stripe:evt_1",
        "unknown_event_type",
        1,
    )
    assert row["reason"] == "event type 'x.unknown' has no mapping contract"


def test_crash_without_ack_redelivers(make_queue: Callable[..., Queue], backend: str) -> None:
    q1 = make_queue()
    q1.publish(message(3))
    [d] = q1.receive(1, visibility_timeout_s=0.2, wait_s=2)
    assert d.attempts == 1
    q1.close()  # the consumer dies: no ack

    q2 = make_queue()
    [again] = _claim_again(q2, backend)
    assert again.message.id == "stripe:evt_3" and again.redelivered and again.attempts == 2
    q2.ack([again])
    assert q2.depth() == 0


def test_crash_loop_is_stopped_by_the_delivery_limit(
    make_queue: Callable[..., Queue], backend: str, warehouse: str
) -> None:
    q = make_queue(max_attempts=2)
    q.publish(message(9))
    for attempt in (1, 2):
        consumer = make_queue(max_attempts=2)
        [d] = _claim_again(consumer, backend)
        assert d.attempts == attempt
        consumer.close()  # crash again
    last = make_queue(max_attempts=2)
    assert last.receive(10, visibility_timeout_s=0.2, wait_s=0.5 if backend.startswith("sql") else 0.3) == []
    # RabbitMQ dead-letters asynchronously (at-least-once strategy): wait for it to reach the DLQ.
    rows = wait_for(lambda: last.drain_dead_letters() or dead_letter_rows(warehouse))
    assert rows
    [row] = dead_letter_rows(warehouse)
    assert (row["natural_key"], row["check_name"], row["attempts"]) == ("stripe:evt_9", "delivery_limit", 2)
    assert last.depth() == 0


def test_release_does_not_spend_an_attempt(make_queue: Callable[..., Queue]) -> None:
    q = make_queue(max_attempts=2)
    q.publish(message(4))
    for _ in range(3):  # more releases than max_attempts: a warehouse outage never dead-letters
        [d] = q.receive(1, wait_s=2)
        assert d.attempts == 1
        q.release([d], delay_s=0)
    [d] = q.receive(1, wait_s=2)
    q.ack([d])
    assert q.depth() == 0


def test_dead_lettering_the_same_event_again_updates_its_row(
    make_queue: Callable[..., Queue], warehouse: str
) -> None:
    q = make_queue()
    for reason in ("first failure", "second failure"):
        q.publish(message(5))
        [d] = q.receive(1, wait_s=2)
        q.dead_letter(d, reason, "contract_violation")
        q.drain_dead_letters()
    [row] = dead_letter_rows(warehouse)
    assert row["reason"] == "second failure" and row["attempts"] == 2


def test_settling_a_delivery_twice_is_refused(make_queue: Callable[..., Queue]) -> None:
    q = make_queue()
    q.publish(message(6))
    [d] = q.receive(1, wait_s=2)
    assert q.retry(d, "timeout", delay_s=0) == "retried"
    with pytest.raises(StaleDelivery):
        q.dead_letter(d, "late decision", "contract")
    [again] = q.receive(1, wait_s=2)
    q.ack([again])
    q.ack([d])  # acking a stale delivery is harmless
    assert q.depth() == 0


def test_receive_waits_for_the_first_message(make_queue: Callable[..., Queue]) -> None:
    q = make_queue()
    started = time.monotonic()
    assert q.receive(5, wait_s=0.3) == []
    assert time.monotonic() - started >= 0.25


def test_receive_batch_returns_what_is_there_up_to_n(make_queue: Callable[..., Queue]) -> None:
    q = make_queue()
    q.publish_many([message(i) for i in range(7)])
    got = q.receive_batch(5, 30)
    assert [d.message.id for d in got] == [message(i).id for i in range(5)]
    rest = q.receive_batch(5, 30)
    assert [d.message.id for d in rest] == [message(i).id for i in range(5, 7)]
    q.ack(got + rest)
    assert q.receive_batch(5, 30) == []


def test_transactional_ack_only_on_the_sql_queue_of_that_database(
    make_queue: Callable[..., Queue], backend: str, warehouse: str, tmp_path: Path
) -> None:
    q = make_queue()
    q.publish(message(1))
    [d] = receive_n(q, 1)
    engine, elsewhere = get_engine(warehouse), get_engine(f"sqlite:///{tmp_path / 'other.db'}")
    assert q.supports_transactional_ack(engine) is backend.startswith("sql")
    assert not q.supports_transactional_ack(elsewhere)
    with pytest.raises(QueueConfigError), elsewhere.begin() as conn:
        q.ack([d], connection=conn)
    if backend.startswith("sql"):
        with engine.begin() as conn:
            q.ack([d], connection=conn)
    else:
        q.ack([d])
    assert q.depth() == 0


def test_a_concurrent_receiver_shares_the_queue(make_queue: Callable[..., Queue], backend: str) -> None:
    q = make_queue()
    other = q.concurrent_receiver()
    if backend != "sql-postgres":  # one writer (SQLite); deliveries belong to the connection (RabbitMQ)
        assert other is None
        return
    assert other is not None and other is not q
    q.publish_many([message(1), message(2)])
    [a] = other.receive(1, 30)
    [b] = q.receive(1, 30)
    assert {a.message.id, b.message.id} == {message(1).id, message(2).id}
    q.ack([a, b])  # a delivery of either handle settles through the other
    assert q.depth() == 0
    other.close()


def test_dead_lettering_without_a_sink_is_a_config_error(make_queue: Callable[..., Queue]) -> None:
    q = make_queue()
    q.dead_letter_sink = None
    q.publish(message(1))
    [d] = receive_n(q, 1)
    try:
        q.dead_letter(d, "fails its contract", "contract_violation")  # RabbitMQ: to its DLQ, as always
    except QueueConfigError:
        assert q.depth() == 1  # nothing recorded, nothing removed: the transaction rolled back
    else:
        with pytest.raises(QueueConfigError, match="dead-letter sink"):
            q.drain_dead_letters()
