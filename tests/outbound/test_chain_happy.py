"""Acceptance: won deals become confirmed Odoo orders with stock reserved, EasyPost labels and a write-back to
the Odoo pickings and the HubSpot deals, end to end through the outbox (docs/ARCHITECTURE.md, "The outbound
flow"), on SQLite and PostgreSQL, on the SQL queue and RabbitMQ."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.outbound import queries
from tests.outbound.chain_world import ChainWorld, chain_world, queue_url_for


def assert_complete(world: ChainWorld, deal_ids: list[str]) -> None:
    """One confirmed order, one label, one tracking reference and one write-back per deal; nothing twice."""
    orders = world.odoo_orders()
    assert orders == {f"hubspot-deal:{d}": 1 for d in deal_ids}
    assert world.easypost.duplicates() == {}
    chains = world.chains()
    for d in deal_ids:
        ref = f"hubspot-deal:{d}"
        order = world.odoo_order(d)
        assert order["state"] == "sale"
        assert world.easypost.labels_bought(ref) == 1
        chain = chains[d]
        assert chain["status"] == "written_back", chain
        assert chain["order_id"] == str(order["id"])
        mine = world.odoo.pickings(order["id"])
        assert mine and all(p["carrier_tracking_ref"] == chain["tracking_code"] for p in mine)
        assert all(p["state"] == "assigned" for p in mine)  # stock reserved
        assert world.deal_property(d, "tracking_number") == chain["tracking_code"]
        assert world.deal_property(d, "odoo_order_name") == order["name"]
    assert world.dead_letters() == []


@pytest.mark.parametrize("n", [pytest.param(12, id="n12")])
def test_won_deals_complete_on_sqlite_and_sql_queue(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    if not warehouse_url.startswith("sqlite"):
        n = 4  # the PostgreSQL variant proves the dialect; the count is proven on SQLite
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deals = [world.add_deal(i, link="stored" if i % 2 else "domain").deal_id for i in range(n)]
        world.pull_and_ingest()
        reports = world.drain()
        assert reports["odoo_order"].sent == n
        assert reports["easypost_label"].sent == n
        assert reports["hubspot_writeback"].sent == n
        assert_complete(world, deals)
        world.pull_odoo_orders()
        rec = queries.reconcile(engine)
        assert rec.passed, rec.as_dict()
        assert rec.deals_with_one_order == n and rec.orders_with_one_label == n


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "warehouse_url", ["sqlite"], indirect=True
)  # PostgreSQL + RabbitMQ: test_chain_faults
def test_won_deals_complete_on_rabbitmq(
    warehouse_url: str,
    engine: sa.Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    url = queue_url_for("rabbitmq", request)
    with chain_world(engine, tmp_path, monkeypatch, queue_url=url) as world:
        deals = [world.add_deal(i).deal_id for i in range(4)]
        world.pull_and_ingest()
        world.drain()
        assert_complete(world, deals)
