"""The outbound framework end to end with a trivial step (tests/outbound/conftest.py ``EchoStep``): capture in
the merge, relay, runner, kill points, retries, dead letters, replay and dry run; on SQLite and PostgreSQL,
on the SQL queue and on RabbitMQ. Crashes are exceptions raised from the runner's hook at the kill point."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from integration_assets.dead_letters.queries import Filter
from integration_assets.outbound import relay as relay_mod
from integration_assets.outbound import runner
from integration_assets.outbound.errors import StepRejected, StepUnavailable
from integration_assets.outbound.replay import replay_outbound
from integration_assets.outbound.runner import StepReport
from integration_assets.policies import OutboundPolicy
from integration_assets.warehouse.schema import dead_letters, outbound_chains, outbound_ledger, outbox
from tests.outbound.conftest import EchoStep, merge_deals

POLICY = OutboundPolicy.model_validate(
    {"attempts": {"max": 3, "backoff_base": "0.01s", "backoff_cap": "0.05s"}}
)


class Crash(Exception):
    """The process dies here (raised from a kill-point hook; the runner never catches it)."""


@pytest.fixture(params=["sql", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def queue_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sql":
        yield "sql"
        return
    base = request.getfixturevalue("amqp_url")
    prefix = f"t{uuid.uuid4().hex[:10]}"
    url = f"{base}?prefix={prefix}&retry_delays_s=0.05&reconnect_max_s=2"
    yield url
    from integration_assets.queue.rabbitmq import RabbitMQQueue

    for step in ("odoo_order", "easypost_label"):
        RabbitMQQueue(runner.step_queue_url(step, url)).delete_topology()


def _run(engine: sa.Engine, queue_url: str, **kw: Any) -> StepReport:
    kw.setdefault("policy", POLICY)
    kw.setdefault("wait_s", 0.3)
    kw.setdefault(
        "lease_s", 0.0
    )  # the crash tests retry at once (test_a_write_in_progress_elsewhere... sets one)
    # A claim outlives any pass here; the crash tests pass a short one so the crashed claim comes back.
    kw.setdefault("visibility_timeout_s", 30.0)
    return runner.run_step(engine, "odoo_order", queue_url=queue_url, **kw)


def _run_until(
    engine: sa.Engine, queue_url: str, done: Callable[[StepReport], bool], **kw: Any
) -> StepReport:
    """Run the step pass after pass (a retried message comes back after its backoff) until ``done``."""
    total = StepReport("odoo_order")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        total.add(_run(engine, queue_url, **kw))
        if done(total):
            return total
    raise AssertionError(f"not done in time: {total.as_dict()}")


def _table(engine: sa.Engine, t: sa.Table, *cols: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        pk = list(t.primary_key.columns)
        return [tuple(r) for r in conn.execute(sa.select(*(t.c[c] for c in cols)).order_by(*pk))]


def _dead(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(dead_letters).order_by(dead_letters.c.id))]


def _won(engine: sa.Engine, n: int) -> list[str]:
    ids = [str(100 + i) for i in range(n)]
    merge_deals(engine, [{"id": i} for i in ids])
    merge_deals(engine, [{"id": i} for i in ids], load_id="ld_again")  # a duplicate delivery of the export
    return ids


def test_each_won_deal_is_written_once(engine: sa.Engine, queue_url: str, echo: EchoStep) -> None:
    ids = _won(engine, 5)
    first = relay_mod.relay(engine, queue_url=queue_url)
    assert first.published == 5
    assert relay_mod.relay(engine, queue_url=queue_url).published == 0  # marked sent: not again
    report = _run_until(engine, queue_url, lambda r: r.sent == 5)
    assert report.duplicates == 0 and report.dead_lettered == 0
    assert echo.created == {i: 1 for i in ids}
    assert _table(engine, outbound_ledger, "key", "status", "attempts") == [
        (f"odoo_order:{i}", "done", 1) for i in ids
    ]
    assert _table(engine, outbound_chains, "chain_id", "status", "order_id") == [
        (i, "ordered", f"o{i}") for i in ids
    ]
    assert len(report.latency_ms) == 5


def test_the_relay_publishes_a_chains_messages_in_order(
    engine: sa.Engine, queue_url: str, echo: EchoStep
) -> None:
    from integration_assets.warehouse import outbox as ob

    with engine.begin() as conn:
        ob.enqueue(
            conn,
            [
                ob.OutboxRow(f"note:{c}:{n}", "note", "odoo_order", c, {"n": n})
                for n in range(4)
                for c in "ab"
            ],
        )
    relay_mod.relay(engine, queue_url=queue_url, limit=3)  # several rounds
    _run_until(engine, queue_url, lambda r: r.sent == 8)
    for chain in "ab":
        assert [n for c, _, _, n in echo.seen if c == chain] == [0, 1, 2, 3]


def test_a_crash_after_publishing_publishes_again_and_writes_once(
    engine: sa.Engine, queue_url: str, echo: EchoStep
) -> None:
    ids = _won(engine, 3)

    def crash(point: str, published: list[int]) -> None:
        raise Crash(point)

    with pytest.raises(Crash):
        relay_mod.relay(engine, queue_url=queue_url, hook=crash)
    assert relay_mod.relay(engine, queue_url=queue_url).published == 3  # at least once: published again
    report = _run_until(engine, queue_url, lambda r: r.sent == 3)
    report.add(_run(engine, queue_url))  # the second copies, where the queue kept them
    assert echo.created == {i: 1 for i in ids}
    # The SQL queue stores a key that is still queued once; RabbitMQ holds both copies: the second is a
    # counted duplicate that calls nothing.
    assert report.duplicates == (0 if queue_url == "sql" else 3)
    assert len(echo.calls) == 3


def test_a_crash_after_the_call_retries_through_the_lookup(
    engine: sa.Engine, queue_url: str, echo: EchoStep
) -> None:
    (deal,) = _won(engine, 1)
    relay_mod.relay(engine, queue_url=queue_url)

    def crash(point: str, msg: object) -> None:
        if point == "after_call":
            raise Crash(point)

    with pytest.raises(Crash):
        _run(engine, queue_url, hook=crash, visibility_timeout_s=0.3)
    assert echo.created == {deal: 1}  # the target committed...
    assert _table(engine, outbound_ledger, "status") == [("started",)]  # ...the ledger did not
    report = _run_until(engine, queue_url, lambda r: r.found == 1)
    assert echo.created == {deal: 1}  # found, not created again
    assert echo.calls == [(deal, 1, False), (deal, 2, True)]
    assert report.sent == 0
    assert _table(engine, outbound_ledger, "key", "status", "attempts") == [
        (f"odoo_order:{deal}", "found", 2)
    ]


@pytest.mark.parametrize("transactional_ack", [True, False])
def test_a_crash_after_the_commit_is_a_counted_duplicate(
    engine: sa.Engine, queue_url: str, echo: EchoStep, transactional_ack: bool
) -> None:
    (deal,) = _won(engine, 1)
    relay_mod.relay(engine, queue_url=queue_url)

    def crash(point: str, msg: object) -> None:
        if point == "after_commit":
            raise Crash(point)

    with pytest.raises(Crash):
        _run(engine, queue_url, hook=crash, transactional_ack=transactional_ack, visibility_timeout_s=0.3)
    assert _table(engine, outbound_ledger, "status") == [("done",)]
    acked_with_commit = queue_url == "sql" and transactional_ack
    if acked_with_commit:
        # The SQL queue acked inside the ledger's transaction: there is nothing to redeliver.
        time.sleep(0.35)  # past the visibility timeout of the crashed run's claim
        assert _run(engine, queue_url).received == 0
    else:
        report = _run_until(engine, queue_url, lambda r: r.duplicates == 1)
        assert report.sent == 0
    assert echo.calls == [(deal, 1, False)]  # one call to the target, whatever happened after
    assert echo.created == {deal: 1}


def test_transient_errors_retry_without_a_dead_letter_until_the_limit(
    engine: sa.Engine, queue_url: str, echo: EchoStep
) -> None:
    ok, bad = _won(engine, 2)
    dead_at_failure: list[int] = []  # dead letters in the warehouse when each transient failure happens

    def failure(text: str) -> Callable[[], StepUnavailable]:
        def make() -> StepUnavailable:
            dead_at_failure.append(len(_dead(engine)))
            return StepUnavailable(text)

        return make

    echo.fail[ok] = [StepUnavailable("odoo: 503"), StepUnavailable("odoo: timeout")]
    echo.fail[bad] = [failure("odoo: 503") for _ in range(3)]
    relay_mod.relay(engine, queue_url=queue_url)
    report = _run_until(engine, queue_url, lambda r: r.sent == 1 and r.dead_lettered == 1)
    assert dead_at_failure == [0, 0, 0]  # no dead letter before the last attempt failed
    assert [a for c, a, _ in echo.calls if c == ok] == [1, 2, 3]
    assert [a for c, a, _ in echo.calls if c == bad] == [1, 2, 3]
    assert report.retried == 4
    (dl,) = _dead(engine)
    assert (dl["stage"], dl["check_name"], dl["natural_key"], dl["entity"], dl["source_system"]) == (
        "outbound",
        "max_attempts",
        bad,
        "odoo_order",
        "odoo",
    )
    assert "odoo: 503" in dl["reason"]
    assert echo.created == {ok: 1}


def test_a_permanent_error_is_dead_lettered_then_replay_completes_it(
    engine: sa.Engine, queue_url: str, echo: EchoStep
) -> None:
    deal, other = _won(engine, 2)
    echo.follow_up = "easypost_label"
    echo.fail[deal] = [
        StepRejected(
            "odoo.exceptions.ValidationError: The field 'Delivery window' (x_delivery_window) is required",
            field="x_delivery_window",
            contract="odoo/sale_order@v2",
        )
    ]
    relay_mod.relay(engine, queue_url=queue_url)
    report = _run_until(engine, queue_url, lambda r: r.sent == 1 and r.dead_lettered == 1)
    assert [a for c, a, _ in echo.calls if c == deal] == [1]  # not retried
    (dl,) = _dead(engine)
    assert dl["stage"] == "outbound" and dl["check_name"] == "target_rejected"
    assert dl["column_name"] == "x_delivery_window"
    assert dl["contract_version"] == "odoo/sale_order@v2"
    assert "x_delivery_window" in dl["reason"]
    assert '"personal"' not in dl["raw_record"] and f'"chain_id": "{deal}"' in dl["raw_record"]
    with engine.connect() as conn:
        chains = dict(conn.execute(sa.select(outbound_chains.c.chain_id, outbound_chains.c.status)).all())
    assert chains == {deal: "dead_lettered", other: "ordered"}
    assert report.errors[-1]["field"] == "x_delivery_window"

    # The cause is fixed (the contract now fills the field): the replay runs the step again.
    out = replay_outbound(engine, Filter(ids=(dl["id"],)), who="test", policy=POLICY)
    assert out.replayed == [dl["id"]] and not out.still_failing
    assert echo.created == {deal: 1, other: 1}
    (dl,) = _dead(engine)
    assert dl["status"] == "replayed"
    assert _table(engine, outbound_ledger, "key", "status") == [
        (f"odoo_order:{deal}", "done"),
        (f"odoo_order:{other}", "done"),
    ]
    with engine.connect() as conn:
        follow = sorted(
            conn.execute(sa.select(outbox.c.key).where(outbox.c.step == "easypost_label")).scalars()
        )
    assert follow == [f"order.confirmed:{deal}", f"order.confirmed:{other}"]
    # Replaying again does nothing: the dead letter is settled.
    again = replay_outbound(engine, Filter(ids=(dl["id"],), status=None), who="test", policy=POLICY)
    assert again.replayed == [] and len(echo.created) == 2


def test_a_replay_that_fails_again_stays_pending(engine: sa.Engine, echo: EchoStep) -> None:
    (deal,) = _won(engine, 1)
    echo.fail[deal] = [StepRejected("missing x_a", field="x_a"), StepRejected("missing x_b", field="x_b")]
    relay_mod.relay(engine, queue_url="sql")
    _run_until(engine, "sql", lambda r: r.dead_lettered == 1)
    (dl,) = _dead(engine)
    out = replay_outbound(engine, Filter(ids=(dl["id"],)), who="test", policy=POLICY)
    assert out.still_failing == {dl["id"]: "missing x_b"}
    (dl,) = _dead(engine)
    assert (dl["status"], dl["column_name"], dl["attempts"]) == ("pending", "x_b", 2)
    assert echo.created == {}


def test_a_dry_run_sends_nothing_and_writes_nothing(
    engine: sa.Engine, queue_url: str, echo: EchoStep
) -> None:
    ids = _won(engine, 3)
    relay_mod.relay(engine, queue_url=queue_url)
    with engine.connect() as conn:
        before_outbox = conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
    report = _run(engine, queue_url, dry_run=True, wait_s=1.0)
    assert report.received == 3 and report.released == 3
    assert sorted(p["chain_id"] for p in report.previews) == ids
    assert report.previews[0]["payloads"] == [
        {"client_order_ref": f"hubspot-deal:{report.previews[0]['chain_id']}"}
    ]
    assert echo.created == {}
    assert _table(engine, outbound_ledger, "key") == []
    assert _table(engine, outbound_chains, "chain_id") == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == before_outbox
    # The messages are still there for the real run.
    assert _run_until(engine, queue_url, lambda r: r.sent == 3).sent == 3


def test_calls_in_flight_stay_within_the_targets_concurrency(engine: sa.Engine, echo: EchoStep) -> None:
    ids = _won(engine, 8)
    echo.pause_s = 0.05
    relay_mod.relay(engine, queue_url="sql")
    policy = POLICY.model_copy(update={"concurrency": POLICY.concurrency.model_copy(update={"odoo": 2})})
    report = _run_until(engine, "sql", lambda r: r.sent == 8, policy=policy)
    assert report.sent == 8 and echo.created == {i: 1 for i in ids}
    assert 1 <= echo.max_in_flight <= 2


def test_a_crash_loop_is_dead_lettered_at_the_attempt_limit_without_another_call(
    engine: sa.Engine, echo: EchoStep
) -> None:
    (deal,) = _won(engine, 1)
    relay_mod.relay(engine, queue_url="sql")

    def crash(point: str, msg: object) -> None:
        if point == "after_call":
            raise Crash(point)

    for _ in range(POLICY.attempts.max):  # the process dies on this message every time
        with pytest.raises(Crash):
            _run_until(engine, "sql", lambda r: False, hook=crash, visibility_timeout_s=0.3)
    report = _run_until(engine, "sql", lambda r: r.dead_lettered == 1)
    assert len(echo.calls) == POLICY.attempts.max  # no call after the limit
    (dl,) = _dead(engine)
    assert (dl["stage"], dl["check_name"], dl["natural_key"]) == ("outbound", "delivery_limit", deal)
    assert report.sent == 0


def test_a_write_in_progress_elsewhere_is_left_to_its_consumer(engine: sa.Engine, echo: EchoStep) -> None:
    from integration_assets.outbound import ledger

    (deal,) = _won(engine, 1)
    relay_mod.relay(engine, queue_url="sql")
    with engine.begin() as conn:  # another consumer has just started this write (its call may be under way)
        ledger.start(conn, f"odoo_order:{deal}", step="odoo_order", chain_id=deal, target_system="odoo")
    report = _run(engine, "sql", lease_s=30.0)
    assert (report.deferred, report.released, echo.calls) == (1, 1, [])
    with engine.connect() as conn:  # back in the queue, for after the lease
        assert conn.execute(sa.text("SELECT count(*) FROM event_queue")).scalar_one() == 1
