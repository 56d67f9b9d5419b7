"""RabbitMQ specifics: pinned topology, mandatory publishes, reconnects, retry tiers, the DLQ drain."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from integration_assets.queue import PublishUnroutable, QueueConfigError, QueueUnavailable
from integration_assets.queue.rabbitmq import RabbitMQQueue
from tests.support.waits import wait_for

from .conftest import SINK, TcpProxy, closed_port, dead_letter_rows, message, receive_n

pytestmark = pytest.mark.rabbitmq

Factory = Callable[..., RabbitMQQueue]


def test_topology_pins_delivery_limit_dlx_and_at_least_once(rabbit: Factory) -> None:
    q = rabbit(max_attempts=4)
    q.publish(message(1))
    if shutil.which("rabbitmqctl"):
        out = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name", "arguments", "--formatter", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        # rabbitmqctl renders arguments as [name, type, value] triples.
        queues = {e["name"]: {k: v for k, _type, v in e["arguments"]} for e in json.loads(out)}
        args = queues[q.config.queue]
        assert args["x-queue-type"] == "quorum" and args["x-delivery-limit"] == 3
        assert args["x-dead-letter-exchange"] == q.config.dlx
        assert args["x-dead-letter-strategy"] == "at-least-once" and args["x-overflow"] == "reject-publish"
        assert queues[q.config.dlq]["x-queue-type"] == "quorum"
        retry = queues[q.config.retry_queue(200)]
        assert retry["x-message-ttl"] == 200 and retry["x-dead-letter-exchange"] == q.config.exchange
    # Queue arguments cannot change in place: a different limit is a terminal config error, not a retry loop.
    other = rabbit(max_attempts=7)
    started = time.monotonic()
    with pytest.raises(QueueConfigError, match="x-delivery-limit"):
        other.publish(message(2))
    assert time.monotonic() - started < 1.5


def test_unroutable_publish_is_an_error_never_a_success(rabbit: Factory) -> None:
    q = rabbit()
    q.publish(message(1))
    channel = q._ensure()
    channel.queue_unbind(q.config.queue, q.config.exchange, routing_key="event")
    with pytest.raises(PublishUnroutable) as info:
        q.publish_many([message(2), message(3)])
    assert set(info.value.message_ids) == {"stripe:evt_2", "stripe:evt_3"}
    channel.queue_bind(q.config.queue, q.config.exchange, routing_key="event")
    q.publish(message(4))
    assert [d.message.id for d in receive_n(q, 2)] == ["stripe:evt_1", "stripe:evt_4"]


def test_broker_down_is_transient_and_bounded(rabbit: Factory) -> None:
    q = rabbit(f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F", reconnect_max_s=0.5)
    started = time.monotonic()
    with pytest.raises(QueueUnavailable):
        q.publish(message(1))
    assert time.monotonic() - started < 3


def test_reconnects_after_losing_the_connection(rabbit: Factory, amqp_proxy: TcpProxy) -> None:
    via_proxy = f"amqp://guest:guest@127.0.0.1:{amqp_proxy.port}/%2F"
    q = rabbit(via_proxy)
    q.publish_many([message(1), message(2)])
    [d1, d2] = receive_n(q, 2)
    amqp_proxy.cut()  # connection lost with two unacked deliveries

    q.publish(message(3))  # reconnects transparently
    q.ack([d1, d2])  # stale: skipped, the broker requeued them
    got = receive_n(q, 3)
    assert sorted(d.message.id for d in got) == ["stripe:evt_1", "stripe:evt_2", "stripe:evt_3"]
    assert all(d.redelivered for d in got if d.message.id != "stripe:evt_3")
    q.ack(got)
    assert q.depth() == 0


def test_retry_goes_through_the_delay_tier_and_comes_back(rabbit: Factory) -> None:
    q = rabbit()
    q.publish(message(1))
    [d] = q.receive(1, wait_s=2)
    started = time.monotonic()
    assert q.retry(d, "timeout", delay_s=0.1) == "retried"  # rounded up to the 0.2 s tier
    assert q.depth() == 1  # counted while it waits in the retry queue
    [again] = q.receive(1, wait_s=3)
    assert time.monotonic() - started >= 0.15
    assert again.attempts == 2 and again.redelivered
    q.ack([again])


def test_duplicates_are_not_collapsed_on_rabbitmq(rabbit: Factory) -> None:
    q = rabbit()
    q.publish_many([message(1), message(1)])
    got = receive_n(q, 2)
    assert [d.message.id for d in got] == ["stripe:evt_1", "stripe:evt_1"]  # the consumer's ledger dedups


def test_dlq_is_acked_only_after_the_warehouse_commit(rabbit: Factory, tmp_path: Path) -> None:
    q = rabbit()
    q.publish(message(1))
    [d] = q.receive(1, wait_s=2)
    q.dead_letter(d, "fails its contract", "contract_violation")
    assert q.dead_letter_depth() == 1

    unmigrated = RabbitMQQueue(
        q.config.url,
        warehouse_url=f"sqlite:///{tmp_path / 'no_tables.db'}",
        config=q.config,
        dead_letter_sink=SINK,
    )
    with pytest.raises(QueueConfigError):
        unmigrated.drain_dead_letters()
    unmigrated.close()
    assert wait_for(lambda: q.dead_letter_depth() == 1)  # nothing lost: nacked back into the DLQ

    assert q.drain_dead_letters() == 1
    assert q.dead_letter_depth() == 0
    [row] = dead_letter_rows(q.warehouse_url)  # type: ignore[arg-type]
    assert (row["natural_key"], row["check_name"], row["stage"]) == (
        "stripe:evt_1",
        "contract_violation",
        "event",
    )
    assert json.loads(row["errors"])[0]["backend"] == "rabbitmq"


def test_pipelined_confirms_beat_confirm_each(rabbit: Factory) -> None:
    """Not a benchmark: a guard that publish_many keeps its batch in flight (docs/BENCHMARKS.md measures)."""
    q = rabbit()
    q.publish(message("warmup"))
    batch = [message(i, body=b"x" * 500) for i in range(400)]
    started = time.monotonic()
    q.publish_many(batch)
    batched = time.monotonic() - started
    started = time.monotonic()
    for m in batch[:100]:
        q.publish(m)
    one_by_one = (time.monotonic() - started) * 4
    assert batched < one_by_one / 2


def test_acking_a_batch_leaves_the_deliveries_held_around_it_unsettled(rabbit: Factory) -> None:
    """Acks go out as one ``multiple`` frame where that settles nothing else: a delivery held for the next
    batch, or one left out of the ack, is still the consumer's (and comes back when the connection goes)."""
    q = rabbit()
    q.publish_many([message(i) for i in range(6)])
    first, second = receive_n(q, 3), receive_n(q, 3)
    q.ack([first[0], first[2]])  # a hole at first[1]
    q.ack(second[1:])
    q.close()
    again = receive_n(q, 2)
    assert sorted(d.message.id for d in again) == sorted([first[1].message.id, second[0].message.id])
    q.ack(again)
    assert q.depth() == 0


def test_acks_waiting_behind_a_rejection_go_out_when_it_is_dead_lettered(rabbit: Factory) -> None:
    q = rabbit()
    q.publish_many([message(i) for i in range(3)])
    a, b, c = receive_n(q, 3)
    q.ack([a, c])  # c waits behind b
    q.dead_letter(b, "fails its contract", "contract_violation")  # settles b: a, b and c are acked now
    q._reset()  # the connection goes without a clean close: anything unacked would come back
    assert q.receive(3, wait_s=1.0) == []
    assert q.depth() == 0 and q.dead_letter_depth() == 1
