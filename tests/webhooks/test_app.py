"""The receiver end to end in-process: what is accepted is durably enqueued; what is refused is not."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest

from integration_assets.providers import stripe
from integration_assets.providers.hubspot import event_key as hubspot_event_key
from integration_assets.queue import Message
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse.schema import dead_letters
from integration_assets.webhooks.limits import Rejected, parse_json
from integration_assets.webhooks.receive import WebhookConfig

from ..queue.conftest import amqp_queue_url, closed_port, receive_n
from .conftest import (
    EASYPOST_SECRET,
    SECRETS,
    STRIPE_OLD_SECRET,
    STRIPE_SECRET,
    MakeClient,
    easypost_body,
    easypost_headers,
    hubspot_body,
    hubspot_headers,
    stripe_event,
    stripe_headers,
)

pytestmark = pytest.mark.anyio

MB = 1 << 20


def rejected(client: httpx.AsyncClient, provider: str, reason: str) -> float:
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    return metrics.value("webhook_requests_rejected_total", provider=provider, reason=reason)


async def assert_refused(
    client: httpx.AsyncClient,
    sql_queue: SqlQueue,
    response: httpx.Response,
    status: int,
    provider: str,
    reason: str,
) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"error": reason}
    assert rejected(client, provider, reason) == 1
    assert sql_queue.depth() == 0


# ------------------------------------------------------------------------------------------- accepted
async def test_stripe_event_is_enqueued_with_its_id_and_no_secret_headers(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    body = stripe_event("evt_1AbC")
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 200 and r.json() == {"accepted": 1}
    [d] = sql_queue.receive(10)
    m = d.message
    assert (m.id, m.source, m.event_type, m.body) == (
        "stripe:evt_1AbC",
        "stripe",
        "payment_intent.succeeded",
        body,
    )
    assert set(m.headers) == {
        "content-type",
        "user-agent",
        "x-stripe-signature-timestamp",
        "x-content-sha256",
    }
    assert not any(STRIPE_SECRET in v or "v1=" in v for v in m.headers.values())


async def test_hubspot_array_becomes_one_message_per_event(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    body = hubspot_body(101, 102, 103)
    r = await client.post("/webhooks/hubspot", content=body, headers=hubspot_headers(body))
    assert r.status_code == 200 and r.json() == {"accepted": 3}
    got = sql_queue.receive(10)
    assert [d.message.id.rsplit(":", 1)[0] for d in got] == ["hubspot:101", "hubspot:102", "hubspot:103"]
    assert [d.message.id for d in got] == [hubspot_event_key(e) for e in json.loads(body)]
    assert {d.message.event_type for d in got} == {"contact.propertyChange"}
    assert json.loads(got[1].message.body)["objectId"] == 1102
    assert got[1].message.headers["x-hubspot-batch-index"] == "1"
    assert "x-hubspot-signature-v3" not in got[1].message.headers


async def test_hubspot_signature_over_the_public_url(make_client: MakeClient, sql_queue: SqlQueue) -> None:
    client = await make_client(public_url="https://hooks.example.com")
    body = hubspot_body(7)
    signed_for_public = hubspot_headers(body, uri="https://hooks.example.com/webhooks/hubspot")
    assert (
        await client.post("/webhooks/hubspot", content=body, headers=signed_for_public)
    ).status_code == 200
    signed_for_local = hubspot_headers(body)
    r = await client.post("/webhooks/hubspot", content=body, headers=signed_for_local)
    assert r.status_code == 401 and r.json() == {"error": "bad_signature"}
    assert sql_queue.depth() == 1


async def test_easypost_event_is_enqueued(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = easypost_body("evt_9f8e")
    r = await client.post("/webhooks/easypost", content=body, headers=easypost_headers(body))
    assert r.status_code == 200
    [d] = sql_queue.receive(10)
    assert (d.message.id, d.message.event_type) == ("easypost:evt_9f8e", "tracker.updated")


async def test_replay_inside_the_window_is_accepted_dedup_is_downstream(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    body = stripe_event("evt_replayed")
    headers = stripe_headers(body)
    for _ in range(2):  # the captured request, sent again 0 s later
        assert (await client.post("/webhooks/stripe", content=body, headers=headers)).status_code == 200
    assert sql_queue.depth() == 1  # the SQL queue collapses pending duplicates; RabbitMQ would hold 2


async def test_rotated_stripe_secrets(make_client: MakeClient, sql_queue: SqlQueue) -> None:
    client = await make_client(secrets={**SECRETS, "stripe": (STRIPE_SECRET, STRIPE_OLD_SECRET)})
    for i, secret in enumerate((STRIPE_OLD_SECRET, STRIPE_SECRET)):
        body = stripe_event(f"evt_rot{i}")
        assert (
            await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, secret))
        ).status_code == 200
    assert sql_queue.depth() == 2


# ------------------------------------------------------------------------------------------- refused
async def test_missing_signature(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = stripe_event()
    r = await client.post("/webhooks/stripe", content=body, headers={"content-type": "application/json"})
    await assert_refused(client, sql_queue, r, 400, "stripe", "missing_signature")


async def test_malformed_signature(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = stripe_event()
    headers = {**stripe_headers(body), "stripe-signature": "t=now,v1=zz"}
    r = await client.post("/webhooks/stripe", content=body, headers=headers)
    await assert_refused(client, sql_queue, r, 400, "stripe", "malformed_signature")


async def test_body_reserialised_after_signing(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = stripe_event()
    headers = stripe_headers(body)
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    r = await client.post("/webhooks/stripe", content=reserialised, headers=headers)
    await assert_refused(client, sql_queue, r, 401, "stripe", "bad_signature")


async def test_timestamp_301_s_old(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = stripe_event()
    r = await client.post(
        "/webhooks/stripe", content=body, headers=stripe_headers(body, t=int(time.time()) - 301)
    )
    await assert_refused(client, sql_queue, r, 400, "stripe", "stale_timestamp")


async def test_timestamp_10_min_in_the_future(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = hubspot_body(1)
    r = await client.post(
        "/webhooks/hubspot",
        content=body,
        headers=hubspot_headers(body, ts_ms=int((time.time() + 600) * 1000)),
    )
    await assert_refused(client, sql_queue, r, 400, "hubspot", "future_timestamp")


async def test_hubspot_timestamp_301_s_old(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = hubspot_body(1)
    r = await client.post(
        "/webhooks/hubspot",
        content=body,
        headers=hubspot_headers(body, ts_ms=int((time.time() - 301) * 1000)),
    )
    await assert_refused(client, sql_queue, r, 400, "hubspot", "stale_timestamp")


async def test_easypost_bad_signature(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = easypost_body()
    r = await client.post(
        "/webhooks/easypost", content=body, headers=easypost_headers(body, "wrong" + EASYPOST_SECRET)
    )
    await assert_refused(client, sql_queue, r, 401, "easypost", "bad_signature")


async def test_wrong_content_type(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = stripe_event()
    headers = {**stripe_headers(body), "content-type": "application/x-www-form-urlencoded"}
    r = await client.post("/webhooks/stripe", content=body, headers=headers)
    await assert_refused(client, sql_queue, r, 415, "stripe", "unsupported_media_type")


async def test_non_json_body(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = b"event=payment_intent.succeeded&id=evt_1"
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    await assert_refused(client, sql_queue, r, 400, "stripe", "invalid_json")


async def test_100k_deep_json_is_refused_quickly(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = b"[" * 100_000 + b"]" * 100_000  # valid JSON, signed: only the depth limit stands in the way
    started = time.monotonic()
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert time.monotonic() - started < 1.0
    await assert_refused(client, sql_queue, r, 400, "stripe", "too_deep")


async def test_json_without_a_provider_event_id(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    body = json.dumps({"id": "not-an-event", "type": "payment_intent.succeeded"}).encode()
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    await assert_refused(client, sql_queue, r, 400, "stripe", "invalid_payload")


async def test_20_mb_body_is_refused_without_reading_it_all(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    sent = 0

    async def twenty_mb() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(320):  # 320 x 64 KiB = 20 MiB, streamed without a Content-Length
            sent += 64 * 1024
            yield b" " * (64 * 1024)

    headers = {"content-type": "application/json", "stripe-signature": f"t={int(time.time())},v1={'0' * 64}"}
    r = await client.post("/webhooks/stripe", content=twenty_mb(), headers=headers)
    await assert_refused(client, sql_queue, r, 413, "stripe", "too_large")
    assert sent <= 1 * MB + 64 * 1024  # reading stopped at the 1 MiB cap


async def test_declared_content_length_above_the_cap_is_refused_before_reading(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        pulled += 1
        yield b"{}"

    headers = {
        "content-type": "application/json",
        "content-length": str(20 * MB),
        "stripe-signature": f"t={int(time.time())},v1={'0' * 64}",
    }
    r = await client.post("/webhooks/stripe", content=body(), headers=headers)
    await assert_refused(client, sql_queue, r, 413, "stripe", "too_large")
    assert pulled == 0


async def test_unconfigured_provider_answers_503(make_client: MakeClient, sql_queue: SqlQueue) -> None:
    client = await make_client(secrets={**SECRETS, "easypost": ()})
    body = easypost_body()
    r = await client.post("/webhooks/easypost", content=body, headers=easypost_headers(body))
    await assert_refused(client, sql_queue, r, 503, "easypost", "not_configured")


async def test_queue_down_answers_503_so_the_provider_retries(
    make_client: MakeClient, isolated_env: Path
) -> None:
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/warehouse"
    client = await make_client(queue_factory=lambda: SqlQueue(unreachable, name="down"))
    body = stripe_event()
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 503 and r.json() == {"error": "queue_unavailable"} and "retry-after" in r.headers
    assert rejected(client, "stripe", "queue_unavailable") == 1
    health = (await client.get("/healthz")).json()
    assert health["publisher"] == "unavailable" and "QueueUnavailable" in health["last_error"]


@pytest.mark.rabbitmq
async def test_rabbitmq_down_answers_503(make_client: MakeClient) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F?prefix=never&reconnect_max_s=0.3"
    client = await make_client(queue_url=url)
    body = stripe_event()
    r = await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 503 and r.json() == {"error": "queue_unavailable"}


@pytest.mark.rabbitmq
async def test_200_only_once_the_broker_confirmed(
    make_client: MakeClient, amqp_url: str, isolated_env: Path
) -> None:
    url = amqp_queue_url(amqp_url, f"wh{time.time_ns()}")
    client = await make_client(queue_url=url)
    observer = RabbitMQQueue(url)
    try:
        bodies = [stripe_event(f"evt_c{i}") for i in range(20)]
        responses = await asyncio.gather(
            *(client.post("/webhooks/stripe", content=b, headers=stripe_headers(b)) for b in bodies)
        )
        assert {r.status_code for r in responses} == {200}
        assert observer.depth() == 20  # every 200 was preceded by a publisher confirm
        batches = client.app.state.metrics.batch_size_count()  # type: ignore[attr-defined]
        assert batches < 20  # concurrent requests shared publishes and their confirms
        got = receive_n(observer, 20)
        assert sorted(d.message.id for d in got) == sorted(f"stripe:evt_c{i}" for i in range(20))
    finally:
        observer.delete_topology()


# ----------------------------------------------------------------------------------- health, metrics
async def test_healthz_and_metrics(client: httpx.AsyncClient) -> None:
    body = stripe_event()
    await client.post("/webhooks/stripe", content=body, headers=stripe_headers(body))
    await client.post("/webhooks/stripe", content=b"{}", headers={"content-type": "text/plain"})
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["providers"] == {"stripe": True, "hubspot": True, "easypost": True}
    r = await client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'webhook_requests_received_total{provider="stripe"} 2' in text
    assert 'webhook_requests_accepted_total{provider="stripe"} 1' in text
    assert 'webhook_requests_rejected_total{provider="stripe",reason="unsupported_media_type"} 1' in text
    assert 'webhook_events_enqueued_total{provider="stripe"} 1' in text
    assert 'webhook_enqueue_seconds_count{provider="stripe"} 1' in text
    assert 'webhook_enqueue_seconds_bucket{le="+Inf",provider="stripe"} 1' in text  # labels sorted
    assert "# TYPE webhook_enqueue_seconds histogram" in text
    assert STRIPE_SECRET not in text


async def test_concurrent_requests_share_publishes(client: httpx.AsyncClient, sql_queue: SqlQueue) -> None:
    bodies = [stripe_event(f"evt_b{i}") for i in range(60)]
    responses = await asyncio.gather(
        *(client.post("/webhooks/stripe", content=b, headers=stripe_headers(b)) for b in bodies)
    )
    refused = [r.text for r in responses if r.status_code != 200]
    assert not refused, refused[:3]  # the reason (overloaded, queue_unavailable, …) when this fails
    assert sql_queue.depth() == 60
    batches = client.app.state.metrics.batch_size_count()  # type: ignore[attr-defined]
    assert batches < 60  # confirms (here: commits) of concurrent requests were batched


@pytest.mark.parametrize("one_writer", [True, False])
async def test_publishers_take_turns_on_a_one_writer_queue(
    make_client: MakeClient, sqlite_warehouse: str, queue_name: str, one_writer: bool
) -> None:
    """SQLite takes one writer at a time: the publisher threads take turns in the process instead of
    queueing on the database lock (where a busy loser can wait past a request's timeout)."""
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    class Recording(SqlQueue):
        def publish_many(self, messages: Sequence[Message]) -> None:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                time.sleep(0.05)  # a slow publish, so concurrent ones overlap (the scenario)
                super().publish_many(messages)
            finally:
                with lock:
                    active[0] -= 1

    def make_queue() -> SqlQueue:
        q = Recording(sqlite_warehouse, name=queue_name)
        assert q.concurrent_writers is False  # SQLite
        q.concurrent_writers = not one_writer
        return q

    client = await make_client(queue_factory=make_queue, publishers=2, max_batch=1)
    bodies = [stripe_event(f"evt_t{i}") for i in range(12)]
    responses = await asyncio.gather(
        *(client.post("/webhooks/stripe", content=b, headers=stripe_headers(b)) for b in bodies)
    )
    assert [r.status_code for r in responses] == [200] * 12
    assert peak[0] == (1 if one_writer else 2)


def test_parse_json_limits() -> None:

    assert parse_json(b'{"a": ["[[[[", {"b": "\\"]]]]"}]}', max_depth=3) == {"a": ["[[[[", {"b": '"]]]]'}]}
    # Exactly at the limit passes, many shallow siblings pass, one level more does not.
    assert parse_json(b"[[[1]]]", max_depth=3) == [[[1]]]
    assert parse_json(b"[" + b",".join([b"[[1]]"] * 50) + b"]", max_depth=3) == [[[1]]] * 50
    for bad, reason in [
        (b"[[[[1]]]]", "too_deep"),
        (b"NaN", "invalid_json"),
        (b"\xff", "invalid_json"),
        (b"", "invalid_json"),
    ]:
        with pytest.raises(Rejected) as info:
            parse_json(bad, max_depth=3)
        assert info.value.reason == reason


def test_config_from_env_reads_secrets_and_hides_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{STRIPE_SECRET},{STRIPE_OLD_SECRET}")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "hs")
    monkeypatch.setenv("INTEGRATION_WEBHOOK_MAX_BYTES", "2048")
    config = WebhookConfig.from_env()
    assert config.secrets["stripe"] == (STRIPE_SECRET, STRIPE_OLD_SECRET)
    assert (
        config.max_body_bytes == 2048 and config.configured("hubspot") and not config.configured("easypost")
    )
    assert STRIPE_SECRET not in repr(config) and "hs" not in repr(config).replace("hubspot", "")
    assert stripe.parse_secrets(None) == ()


# ------------------------------------------------------------------------------------------- split batches
async def test_hubspot_batch_with_a_bad_element_is_accepted_and_split(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    events = json.loads(hubspot_body(*range(1, 101)))
    events[57] = "not an event"
    body = json.dumps(events).encode()
    r = await client.post("/webhooks/hubspot", content=body, headers=hubspot_headers(body))
    assert r.status_code == 200 and r.json() == {"accepted": 99, "dead_lettered": 1}
    got = sql_queue.receive(200)
    assert len(got) == 100
    [bad] = [d.message for d in got if "x-receiver-check" in d.message.headers]
    assert json.loads(bad.body) == "not an event"
    assert bad.headers["x-receiver-check"] == "invalid_payload"
    assert "element 57 of 100" in bad.headers["x-receiver-reason"]
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    assert metrics.value("webhook_invalid_elements_total", provider="hubspot") == 1
    assert metrics.value("webhook_events_enqueued_total", provider="hubspot") == 99


async def test_hubspot_body_that_is_not_an_array_is_still_refused(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    body = json.dumps(json.loads(hubspot_body(1))[0]).encode()
    r = await client.post("/webhooks/hubspot", content=body, headers=hubspot_headers(body))
    await assert_refused(client, sql_queue, r, 400, "hubspot", "invalid_payload")


async def test_key_duplicates_and_collisions_are_counted_in_the_metrics(
    client: httpx.AsyncClient, sql_queue: SqlQueue
) -> None:
    first = hubspot_body(5)
    retry = json.dumps([{**json.loads(first)[0], "attemptNumber": 1}]).encode()
    other = json.dumps(
        [{**json.loads(first)[0], "changeSource": "IMPORT"}]
    ).encode()  # same key, other content
    for body in (first, retry, other):
        r = await client.post("/webhooks/hubspot", content=body, headers=hubspot_headers(body))
        assert r.status_code == 200
    assert sql_queue.depth() == 1
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    assert metrics.value("webhook_key_duplicates_total", provider="hubspot") == 1
    assert metrics.value("webhook_key_collisions_total", provider="hubspot") == 1
    with sql_queue.engine.connect() as conn:
        [(check, key)] = conn.execute(
            sa.select(dead_letters.c.check_name, dead_letters.c.natural_key).where(
                dead_letters.c.stage == "event", dead_letters.c.natural_key.like("hubspot:5:%")
            )
        ).all()
    assert check == "key_collision" and "#collision-" in key
    text = generate_latest(metrics.registry).decode()
    assert 'webhook_key_collisions_total{provider="hubspot"} 1' in text
