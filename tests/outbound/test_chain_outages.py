"""Acceptance: a target that is down delays only its own hop. EasyPost down: orders keep flowing and the labels
catch up once it is back. Each target down for a while (5xx, 429 with Retry-After): retried with backoff, no
dead letter, everything once. SQLite with the SQL queue; the policy copy has small backoffs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.outbound.chain_world import ChainWorld, chain_world

pytestmark = pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)


def assert_done_once(world: ChainWorld, deals: list[str]) -> None:
    assert world.odoo_orders() == {f"hubspot-deal:{d}": 1 for d in deals}
    assert {world.easypost.labels_bought(f"hubspot-deal:{d}") for d in deals} == {1}
    assert world.easypost.duplicates() == {}
    assert set(world.deal_patches()) == set(deals)
    assert {c["status"] for c in world.chains().values()} == {"written_back"}
    assert world.dead_letters() == []


def test_easypost_down_orders_continue_and_labels_catch_up(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        world.easypost.down()
        first = [world.add_deal(i).deal_id for i in range(3)]
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        for _ in range(3):  # the label step keeps trying while EasyPost is down
            report = world.run_step_once("easypost_label")
            assert report.retried == report.processed > 0 and report.sent == 0
            time.sleep(0.25)  # the retries' backoff
        # More deals are won meanwhile: their orders are made too.
        later = [world.add_deal(i).deal_id for i in range(3, 5)]
        world.pull_and_ingest()
        world.drain(steps=["odoo_order"])
        assert world.odoo_orders() == {f"hubspot-deal:{d}": 1 for d in first + later}
        assert world.easypost.labels_bought() == 0 and world.dead_letters() == []
        assert {c["status"] for c in world.chains().values()} == {"ordered"}

        world.easypost.up()
        world.drain()
        assert_done_once(world, first + later)
        attempts = {
            v["chain_id"]: v["attempts"] for v in world.ledger().values() if v["step"] == "easypost_label"
        }
        assert all(attempts[d] >= 4 for d in first) and all(attempts[d] >= 1 for d in later)


@pytest.mark.parametrize("target", ["odoo", "easypost", "hubspot"])
def test_each_target_down_for_a_while_is_retried_without_a_dead_letter(
    warehouse_url: str, engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        deals = [world.add_deal(i).deal_id for i in range(2)]
        world.pull_and_ingest()
        # Down for the first several calls (the client tries twice per step attempt): three step attempts
        # fail, far below the policy's limit of 8; then a 429 with Retry-After.
        if target == "odoo":
            world.odoo.fail_http(503, times=6)
            world.odoo.fail_http(429, times=1, retry_after=1)
        elif target == "easypost":
            world.easypost.fail_next(503, times=6)
            world.easypost.rate_limit(times=1, retry_after=1)
        else:
            # The write-back's PATCH (the order step reads line items from HubSpot too)
            world.hubspot.fail_next(6, status=503, method="PATCH")
            world.hubspot.throttle_next(1, retry_after=1, method="PATCH")
        reports = world.drain()
        step = {"odoo": "odoo_order", "easypost": "easypost_label", "hubspot": "hubspot_writeback"}[target]
        assert reports[step].retried >= 3
        assert_done_once(world, deals)
        assert max(v["attempts"] for v in world.ledger().values() if v["step"] == step) >= 3
