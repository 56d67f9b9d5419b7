"""Acceptance: exactly once in effect. Won deals delivered more than once, with a fault at every kill point of
every step (the target committed and its answer was lost; the consumer died after the target call, before the
ledger commit; the consumer died after the ledger commit, before the ack), end with exactly one order, one
label and one write-back per deal, nothing twice anywhere, and the reconciliation passing. On SQLite with the
SQL queue (12 deals) and on PostgreSQL with RabbitMQ (4)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.outbound import queries
from integration_assets.outbound.relay import relay, to_message
from integration_assets.outbound.runner import open_step_queue
from integration_assets.queue import Message
from integration_assets.warehouse import outbox
from integration_assets.warehouse.schema import outbox as outbox_table
from tests.outbound.chain_world import FORWARD, ChainWorld, Crash, chain_world, crash_once, queue_url_for


def kill_at_every_point(world: ChainWorld, step: str) -> None:
    """Kill the consumer of ``step`` once after a target call and once after a ledger commit (the ack made
    after the commit, as a queue without transactional ack does), then let its messages come back."""
    for point in ("after_call", "after_commit"):
        fired: list[str] = []
        with pytest.raises(Crash):
            world.run_step_once(
                step,
                hook=crash_once(point, fired),
                transactional_ack=False,
                visibility_timeout_s=0.3,
                max_messages=3,
            )
        assert len(fired) == 1, (step, point)
        if not (world.queue_url or "").startswith("amqp"):
            time.sleep(0.35)  # the SQL queue's lease runs out (RabbitMQ requeued at the connection's close)


def republish(world: ChainWorld, topic: str) -> int:
    """Deliver every outbox message of ``topic`` once more (an at-least-once queue delivering a duplicate)."""
    c = outbox_table.c
    with world.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                c.id, c.key, c.topic, c.step, c.chain_id, c.payload, c.created_at, c.attempts, c.sent_at
            )
            .where(c.topic == topic)
            .order_by(c.id)
        ).all()
    assert rows and all(r.sent_at is not None for r in rows)  # every one was relayed already
    by_step: dict[str, list[Message]] = {}
    for r in rows:
        by_step.setdefault(r.step, []).append(to_message(outbox.UnsentRow(*r[:8])))
    for step, messages in by_step.items():
        q = open_step_queue(step, world.queue_url, engine=world.engine)
        try:
            q.publish_many(messages)
        finally:
            q.close()
    return len(rows)


@pytest.mark.parametrize(
    ("warehouse_url", "queue", "n"),
    [
        pytest.param("sqlite", "sql", 12, id="sqlite-sql-12"),
        pytest.param(
            "postgres",
            "rabbitmq",
            4,
            id="postgres-rabbitmq-4",
            marks=[pytest.mark.postgres, pytest.mark.rabbitmq],
        ),
    ],
    indirect=["warehouse_url"],
)
def test_every_kill_point_exactly_once(
    warehouse_url: str,
    engine: sa.Engine,
    queue: str,
    n: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    with chain_world(engine, tmp_path, monkeypatch, queue_url=queue_url_for(queue, request)) as world:
        deals = [world.add_deal(i, link="stored" if i % 2 else "domain").deal_id for i in range(n)]
        world.pull_and_ingest()
        # Duplicate won events: the deals change again (a new modified date) and come in a second time.
        world.hubspot.touch("deals", deals)
        world.pull_and_ingest(("deals",))

        # The target committed, then the answer was lost, for each write of the chain.
        world.odoo.commit_then_drop("create", "sale.order", times=2)
        world.odoo.commit_then_drop("action_confirm", "sale.order", times=1)
        world.odoo.commit_then_drop("write", "stock.picking", times=1)
        world.easypost.drop_hold = 2.0
        world.easypost.commit_then_drop("/v2/shipments", times=2)
        world.easypost.commit_then_drop("/v2/shipments/*/buy", times=2)
        world.hubspot.commit_then_drop(2)

        # Each step: killed after a call and after a commit, then run to the end before the next step.
        for step in FORWARD:
            relay(engine, queue_url=world.queue_url)
            kill_at_every_point(world, step)
            world.drain(steps=[step])

        # Every fault fired.
        assert len(world.hubspot.dropped) == 2
        assert world.odoo._drops == []
        assert all(d.times == 0 for d in world.easypost._drops)

        # Redeliveries of messages already done: counted, nothing called.
        calls_before = len(world.odoo.requests) + len(world.easypost.requests) + len(world.hubspot.requests)
        assert republish(world, "deal.won") == n
        assert republish(world, "label.bought") == 2 * n
        reports = world.drain()
        assert reports["odoo_order"].duplicates == n
        assert reports["odoo_tracking"].duplicates + reports["hubspot_writeback"].duplicates == 2 * n
        assert (
            len(world.odoo.requests) + len(world.easypost.requests) + len(world.hubspot.requests)
            == calls_before
        )

        # Exactly one of everything per deal.
        assert world.odoo_orders() == {f"hubspot-deal:{d}": 1 for d in deals}
        assert world.easypost.duplicates() == {}
        assert {world.easypost.labels_bought(f"hubspot-deal:{d}") for d in deals} == {1}
        assert world.easypost.shipments_created == n
        assert set(world.deal_patches()) == set(deals)
        chains = world.chains()
        for d in deals:
            assert chains[d]["status"] == "written_back"
            assert world.deal_property(d, "tracking_number") == chains[d]["tracking_code"]
            order = world.odoo_order(d)
            assert {p["carrier_tracking_ref"] for p in world.odoo.pickings(order["id"])} == {
                chains[d]["tracking_code"]
            }
        assert world.dead_letters() == []
        # The lost answers were found by key on the retry, not created again.
        found = {k: v for k, v in world.ledger().items() if v["status"] == "found"}
        assert {v["step"] for v in found.values()} >= {"odoo_order", "easypost_label"}
        world.pull_odoo_orders()
        rec = queries.reconcile(engine)
        assert rec.passed, rec.as_dict()
        assert rec.deals_with_one_order == n and rec.orders_with_one_label == n
