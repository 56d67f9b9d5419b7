"""``run_outbound`` executed in-process against the fake Odoo, EasyPost and HubSpot (their real wire formats
on loopback), the warehouse and the SQL queue: won deals become orders, labels and write-backs; each outbound
asset materializes with its figures when its step did something, and is only observed when it did nothing
(an idle run must not look like new work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.assets.outbound import (
    DEAL_WRITEBACK,
    HOPS,
    LABELS,
    PICKING_TRACKING,
    RUN_OP,
    SALE_ORDERS,
    SHIPMENT_STATUS,
    percentile,
)
from integration_assets.outbound import queries
from tests.outbound.chain_world import ChainWorld, chain_world


def point_settings_at(world: ChainWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run builds its clients from settings, as in production: here they name the fakes."""
    for name, value in {
        "ODOO_URL": world.odoo.url,
        "ODOO_DB": world.odoo.db,
        "ODOO_USERNAME": world.odoo.login,
        "ODOO_API_KEY": world.odoo.api_key,
        "EASYPOST_BASE_URL": world.easypost.url,
        "EASYPOST_API_KEY": world.easypost.api_key,
        "HUBSPOT_BASE_URL": world.hubspot.url,
        "HUBSPOT_ACCESS_TOKEN": world.hubspot.token,
    }.items():
        monkeypatch.setenv(name, value)


def _events(res: dg.ExecuteInProcessResult) -> tuple[dict[dg.AssetKey, dict], dict[dg.AssetKey, dict]]:
    """(materializations, observations) of the run's outbound op: asset key -> metadata."""
    mats = {m.asset_key: dict(m.metadata) for m in res.asset_materializations_for_node(RUN_OP)}
    obs = {o.asset_key: dict(o.metadata) for o in res.asset_observations_for_node(RUN_OP)}
    return mats, obs


def _value(meta: dict, key: str) -> Any:
    v = meta[key]
    return getattr(v, "value", v)


def test_run_outbound_materializes_each_hop_that_did_work(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_assets.definitions import defs

    n = 3
    with chain_world(engine, tmp_path, monkeypatch) as world:
        point_settings_at(world, monkeypatch)
        deals = [world.add_deal(i).deal_id for i in range(n)]
        world.pull_and_ingest()  # the merge captures deal.won rows in the outbox
        job = defs.resolve_job_def("run_outbound")
        with dg.instance_for_test() as instance:
            res = job.execute_in_process(instance=instance)
            assert res.success
            mats, obs = _events(res)
            assert set(mats) == {SALE_ORDERS, LABELS, PICKING_TRACKING, DEAL_WRITEBACK}
            assert set(obs) == {SHIPMENT_STATUS}  # no tracking update yet: observed, not materialized
            for key in (SALE_ORDERS, LABELS, PICKING_TRACKING, DEAL_WRITEBACK):
                assert _value(mats[key], "sent") == n, key
                assert _value(mats[key], "dead_lettered") == 0 and _value(mats[key], "retried") == 0
                assert _value(mats[key], "latency_p99_ms") >= _value(mats[key], "latency_p50_ms") > 0
            assert _value(mats[SALE_ORDERS], "relayed_in_run") == n
            assert world.odoo_orders() == {f"hubspot-deal:{d}": 1 for d in deals}
            assert all(world.easypost.labels_bought(f"hubspot-deal:{d}") == 1 for d in deals)

            again = job.execute_in_process(instance=instance)  # nothing left to do
            mats2, obs2 = _events(again)
            assert mats2 == {} and set(obs2) == {h.key for h in HOPS}
            assert all(_value(m, "received") == 0 for m in obs2.values())
            latest = instance.get_latest_materialization_event(SALE_ORDERS)
            assert latest is not None and latest.run_id == res.run_id  # freshness kept the working run
        world.pull_odoo_orders()
        assert queries.reconcile(engine).passed


def test_a_subset_runs_only_its_steps(
    isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite only: the selection is the same on both dialects (the full run above covers PostgreSQL)."""
    from integration_assets.definitions import defs
    from integration_assets.warehouse import db

    url = f"sqlite:///{isolated_env / 'warehouse.db'}"
    db.upgrade(url)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    engine = db.get_engine(url)

    with chain_world(engine, tmp_path, monkeypatch) as world:
        point_settings_at(world, monkeypatch)
        world.add_deal(1)
        world.pull_and_ingest()
        with dg.instance_for_test() as instance:
            res = defs.resolve_job_def("run_outbound").execute_in_process(
                instance=instance, asset_selection=[SALE_ORDERS]
            )
        mats, obs = _events(res)
        assert set(mats) == {SALE_ORDERS} and obs == {}
        assert sum(world.odoo_orders().values()) == 1
        assert world.easypost.shipments_created == 0  # the label step did not run
        assert [b.pending for b in queries.backlog(engine) if b.step == "easypost_label"] == [1]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5], 99) == 5
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50, 99, 100)
