"""RELIABILITY #4, broker killed during publish: the webhook receiver (real uvicorn server) publishes to a
RabbitMQ node of the test's own; while signed Stripe deliveries stream in, the node is killed with
``kill -9`` and started again on the same data.

The HTTP client behaves like a provider: a 200 means delivered; a 503 or a broken connection means
"send the same event again later" (bounded here). Every event the receiver confirmed with 200 must land
(its publish was confirmed by the broker, so it survived the kill); every other one was re-sent under the
same id; nothing is applied twice.

RELIABILITY #6, broker hang: the same, with the node frozen (``kill -STOP``) for 8 s instead, then
continued (``kill -CONT``): publishes wait past their deadline and are answered 503, sent again, and some
of the first copies land as well; the ledger makes those duplicates, with no second effect.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from integration_assets.events.drain import drain, drain_queue_url
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.warehouse.db import get_engine
from integration_assets.webhooks.app import create_app
from tests.events.conftest import amqp_queue_url
from tests.faults.accounting import EventLedger, Figures, account_events
from tests.faults.producer import stripe_body
from tests.support.receiver import serving
from tests.support.servers import OwnRabbitMQ
from tests.webhooks.conftest import stripe_headers, test_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

N = 300
CONCURRENCY = 32
MAX_ATTEMPTS = 40  # per event; a provider retries for days, the test for at most ~a minute


@pytest.fixture
def warehouse(pg_database: str) -> str:
    from tests.conftest import _truncate_all

    _truncate_all(pg_database)
    return pg_database


@pytest.fixture
def receiver(own_rabbitmq: OwnRabbitMQ, warehouse: str) -> Iterator[tuple[str, str]]:
    queue_url = amqp_queue_url(
        own_rabbitmq.amqp_url, f"f{uuid.uuid4().hex[:10]}", reconnect_max_s=1, max_attempts=5
    )
    app = create_app(
        queue_factory=lambda: RabbitMQQueue(queue_url, warehouse_url=warehouse),
        config=test_config(enqueue_timeout_s=5.0),
    )
    with serving(app) as base:
        yield base, queue_url


@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_broker_restart_mid_publish(
    fault: str,
    receiver: tuple[str, str],
    own_rabbitmq: OwnRabbitMQ,
    warehouse: str,
    record: Callable[..., Figures],
) -> None:
    base, queue_url = receiver
    ledger = EventLedger()
    statuses: dict[str, int] = {}
    accepted = 0
    done = threading.Event()

    async def deliver(client: httpx.AsyncClient, n: int) -> None:
        nonlocal accepted
        key, body = stripe_body(n)
        for _ in range(MAX_ATTEMPTS):
            try:
                status = (
                    await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
                ).status_code
            except httpx.HTTPError:
                status = 0  # the connection broke: the provider does not know, so it sends again
            ledger.send(key, key, confirmed=status == 200)
            statuses[key] = status
            if status == 200:
                accepted += 1
                return
            await asyncio.sleep(0.5)

    async def produce() -> None:
        sem = asyncio.Semaphore(CONCURRENCY)
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:

            async def one(n: int) -> None:
                async with sem:
                    await deliver(client, n)

            await asyncio.gather(*(one(n) for n in range(N)))

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(produce())
        except BaseException as exc:  # noqa: BLE001 - surfaced in the test's thread
            errors.append(exc)
        finally:
            done.set()

    producer = threading.Thread(target=run, name="faults-producer", daemon=True)
    producer.start()
    t0 = time.monotonic()
    while accepted < N // 3 and time.monotonic() - t0 < 60 and not done.is_set():
        time.sleep(0.01)
    assert not done.is_set(), "the producer finished before the fault"
    if fault == "kill":
        own_rabbitmq.kill()  # kill -9 of the broker, publishes and confirms in flight
        restart_s = own_rabbitmq.start()
    else:
        own_rabbitmq.pause()  # the broker hangs: sockets open, nothing answered
        try:
            time.sleep(8.0)  # the fault's duration (longer than the receiver's 5 s enqueue timeout)
        finally:
            own_rabbitmq.resume()
        restart_s = 0.0
    assert done.wait(120), "the producer did not finish"
    assert not errors, errors
    refused = ledger.attempts - N
    assert all(s == 200 for s in statuses.values()), {k: s for k, s in statuses.items() if s != 200}
    assert refused > 0, "no delivery saw the outage"
    # Drain as the drain runs do: a queue opened per drain and closed after it (deliveries it prefetched
    # and did not take go back to the queue), until the broker reports the queue empty.
    engine = get_engine(warehouse)
    probe = RabbitMQQueue(queue_url, warehouse_url=warehouse)
    try:
        deadline = time.monotonic() + 60  # a quorum queue just restarted may take a moment to deliver
        while time.monotonic() < deadline:
            queue = RabbitMQQueue(drain_queue_url(queue_url, batch_size=1000), warehouse_url=warehouse)
            try:
                r = drain(queue, engine=engine, batch_size=1000, wait_s=2.0)
            finally:
                queue.close()
            assert r.balanced, r.as_dict()
            if r.totals.events_in == 0 and probe.depth() == 0:  # waited 2 s for a delivery, got none
                break
        assert probe.depth() == 0 and probe.dead_letter_depth() == 0
    finally:
        probe.delete_topology()
        probe.close()
    scenario = (
        "broker kill -9 + restart mid-publish"
        if fault == "kill"
        else "broker paused 8 s (SIGSTOP) mid-publish"
    )
    fig = account_events(engine, ledger, scenario, tables=["payments"], backend="rabbitmq(own node)-postgres")
    back = f"node back in {restart_s:.1f}s" if fault == "kill" else "node paused 8 s"
    fig.notes.append(f"{ledger.attempts} POSTs, {refused} answered 503 / broken and re-sent; {back}")
    record(fig, applied=N, dead_lettered=0)
