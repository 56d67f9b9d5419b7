"""Daily partitions on the API pulls (assets/pull.py): the fakes over real HTTP, the real ingest path, the
loads ledger on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.assets.pull import (
    PARTITIONED_ASSETS,
    api_key,
    build_partitioned_asset,
    partition_job_name,
    partitions_def_for,
)
from integration_assets.jobs.pull import HubSpotResource, OdooResource
from integration_assets.policies import load_policies
from integration_assets.resources import WarehouseResource
from integration_assets.sandbox.fakes._server import Fault, LoggedRequest
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import CANONICAL_TABLES, loads

D = datetime(2026, 10, 5, tzinfo=UTC)  # partition 2026-10-05: [D, D + 1 day)
DAY = timedelta(days=1)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as i:
        yield i


def _hubspot_asset(entity: str = "companies") -> dg.AssetsDefinition:
    return build_partitioned_asset("hubspot", entity, load_policies())


def _materialize(
    asset: dg.AssetsDefinition,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    *,
    key: str | None = None,
    keys: tuple[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    tags = {}
    if keys is not None:  # one run over a range, as a multi_run backfill launches it (with its tag)
        tags = {
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[1],
            "dagster/backfill": "testbackfill",
        }
    return dg.materialize(
        [asset], partition_key=key, instance=instance, resources=resources, tags=tags, raise_on_error=False
    )


def _days(res: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, dict[str, Any]]:
    """Partition key -> metadata values of its materialization in this run."""
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in res.get_asset_materialization_events()
        if e.asset_key == key and e.partition is not None
    }


def _ids(engine: sa.Engine, table: str) -> set[str]:
    t = CANONICAL_TABLES[table]
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(sa.select(t.c.source_id))}


def _partition_loads(engine: sa.Engine, entity: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(
                    loads.c.partition_key,
                    loads.c.status,
                    loads.c.rows_inserted,
                    loads.c.rows_updated,
                    loads.c.rows_read,
                )
                .where(loads.c.entity == entity, loads.c.partition_key.is_not(None))
                .order_by(loads.c.started_at)
            )
        )


def _companies(fake: FakeHubSpot, times: list[datetime]) -> list[str]:
    """One company per time in ``times`` (its hs_lastmodifieddate), ids in the same order."""
    return [
        fake.add(
            "companies",
            {
                "name": f"Company {i}",
                "domain": f"c{i}.example.com",
                "industry": "RETAIL",
                "country": "Germany",
            },
            modified=t,
        )
        for i, t in enumerate(times)
    ]


@pytest.fixture
def hubspot_resources(hubspot: FakeHubSpot, warehouse_url: str) -> dict[str, Any]:
    return {
        "hubspot": HubSpotResource(access_token=hubspot.token, base_url=hubspot.url),
        "warehouse": WarehouseResource(),
    }


def test_the_partitioned_assets_jobs_and_partitions() -> None:
    assert PARTITIONED_ASSETS[("odoo", "sale.order")] == dg.AssetKey(["api", "odoo", "sale_order"])
    assert partition_job_name("hubspot", "contacts") == "api_hubspot_contacts"
    pdef = partitions_def_for("hubspot")
    assert pdef.get_first_partition_key() == load_policies().partitions.start_for("hubspot").isoformat()
    today = datetime.now(UTC).date().isoformat()
    assert pdef.get_last_partition_key() == today  # today's partition exists
    tw = pdef.time_window_for_partition_key("2026-10-05")
    assert (tw.start, tw.end) == (D, D + DAY)
    asset = _hubspot_asset()
    assert asset.backfill_policy == dg.BackfillPolicy.multi_run(
        load_policies().partitions.max_partitions_per_run
    )


def test_one_partition_loads_exactly_its_window_and_the_boundary_record_once(
    hubspot: FakeHubSpot, hubspot_resources: dict[str, Any], instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    before, first, inside, boundary, after = _companies(
        hubspot,
        [
            D - timedelta(milliseconds=1),  # the day before
            D,  # midnight: this day
            D + timedelta(hours=12),
            D + DAY,  # next midnight: the next day only
            D + DAY + timedelta(hours=1),
        ],
    )
    asset = _hubspot_asset()
    res = _materialize(asset, hubspot_resources, instance, key="2026-10-05")
    assert res.success
    assert _ids(engine, "companies") == {first, inside}
    day = _days(res, api_key("hubspot", "companies"))["2026-10-05"]
    assert (day["records_pulled"], day["records_outside_window"], day["rows_inserted"]) == (2, 0, 2)
    assert day["api_budget_priority"] == "live"
    assert day["window_start"].startswith("2026-10-05T00:00:00") and day["file"].startswith(
        "companies-2026-10-05-"
    )

    res = _materialize(asset, hubspot_resources, instance, key="2026-10-06")
    assert res.success
    assert _ids(engine, "companies") == {first, inside, boundary, after}
    assert before not in _ids(engine, "companies")
    assert [(r.partition_key, r.rows_inserted) for r in _partition_loads(engine, "companies")] == [
        ("2026-10-05", 2),
        ("2026-10-06", 2),
    ]
    # The file was loaded in the run: archived, nothing left in the inbox for the sensor.
    assert not list((get_settings().inbox_dir / "hubspot" / "companies").glob("*"))


def test_a_rerun_of_an_unchanged_partition_writes_nothing(
    hubspot: FakeHubSpot, hubspot_resources: dict[str, Any], instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    _companies(hubspot, [D + timedelta(hours=h) for h in (1, 2, 3)])
    asset = _hubspot_asset()
    assert _materialize(asset, hubspot_resources, instance, key="2026-10-05").success
    res = _materialize(asset, hubspot_resources, instance, key="2026-10-05")
    assert res.success
    day = _days(res, api_key("hubspot", "companies"))["2026-10-05"]
    assert day["records_pulled"] == 3 and day["rows_written"] == 0
    rows = _partition_loads(engine, "companies")
    assert [r.rows_inserted + r.rows_updated for r in rows] == [3, 0]  # the ledger says it too
    # The unpartitioned canonical asset got a materialization from the first run only.
    wh = instance.fetch_materializations(dg.AssetKey(["warehouse", "companies"]), limit=10).records
    assert len(wh) == 1


def test_a_backfill_of_three_partitions_reports_each_day(
    hubspot: FakeHubSpot, hubspot_resources: dict[str, Any], instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    # Day 1: two companies, day 2: none, day 3: one.
    _companies(hubspot, [D + timedelta(hours=1), D + timedelta(hours=2), D + 2 * DAY + timedelta(hours=5)])
    asset = _hubspot_asset()
    res = _materialize(asset, hubspot_resources, instance, keys=("2026-10-05", "2026-10-07"))
    assert res.success
    days = _days(res, api_key("hubspot", "companies"))
    assert {k: v["rows_inserted"] for k, v in days.items()} == {
        "2026-10-05": 2,
        "2026-10-06": 0,  # checked, nothing modified: still materialized
        "2026-10-07": 1,
    }
    assert days["2026-10-06"]["load_status"] == "nothing modified"
    # A backfill's requests take the backfill share of the shared API budget.
    assert {v["api_budget_priority"] for v in days.values()} == {"backfill"}
    assert days["2026-10-07"]["hubspot_api_requests"] > 0
    assert instance.get_materialized_partitions(api_key("hubspot", "companies")) == {
        "2026-10-05",
        "2026-10-06",
        "2026-10-07",
    }
    # The same range again: every day checked, nothing written.
    res = _materialize(asset, hubspot_resources, instance, keys=("2026-10-05", "2026-10-07"))
    assert res.success
    assert {k: v["rows_written"] for k, v in _days(res, api_key("hubspot", "companies")).items()} == {
        "2026-10-05": 0,
        "2026-10-06": 0,
        "2026-10-07": 0,
    }
    assert len(_ids(engine, "companies")) == 3


class _LeakyHubSpot(FakeHubSpot):
    """A HubSpot whose search ignores the LT bound: it returns records after the window too."""

    def _matches(self, object_type: str, rec: dict[str, Any], f: dict[str, Any]) -> bool:
        if f.get("operator") == "LT":
            return True
        return super()._matches(object_type, rec, f)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the window is the connector's
def test_records_returned_outside_the_window_are_not_loaded(
    warehouse_url: str, instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    fake = _LeakyHubSpot()
    fake.start()
    try:
        inside, later = _companies(fake, [D + timedelta(hours=3), D + DAY + timedelta(hours=3)])
        res = _materialize(
            _hubspot_asset(),
            {
                "hubspot": HubSpotResource(access_token=fake.token, base_url=fake.url),
                "warehouse": WarehouseResource(),
            },
            instance,
            key="2026-10-05",
        )
    finally:
        fake.stop()
    assert res.success
    day = _days(res, api_key("hubspot", "companies"))["2026-10-05"]
    assert (day["records_pulled"], day["records_outside_window"], day["records_landed"]) == (2, 1, 1)
    assert _ids(engine, "companies") == {inside}


def test_a_pull_failing_halfway_writes_nothing_and_the_retry_completes(
    hubspot: FakeHubSpot, hubspot_resources: dict[str, Any], instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    _companies(hubspot, [D + timedelta(seconds=10 * i) for i in range(150)])  # two search pages of 100
    searches = {"n": 0}

    def second_search_rejected(req: LoggedRequest) -> Fault | None:
        if req.path.endswith("/search"):
            searches["n"] += 1
            if searches["n"] == 2:
                return Fault(
                    400, {"status": "error", "message": "bad request", "category": "VALIDATION_ERROR"}, {}
                )
        return None

    hubspot.fault = second_search_rejected
    asset = _hubspot_asset()
    res = _materialize(asset, hubspot_resources, instance, key="2026-10-05")
    assert not res.success
    failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data.user_failure_data
    assert data is not None and data.metadata["partition"].value == "2026-10-05"
    assert data.metadata["kind"].value == "terminal"
    folder = get_settings().inbox_dir / "hubspot" / "companies"
    assert not folder.exists() or not list(folder.iterdir())  # no file, no .part
    assert _ids(engine, "companies") == set() and _partition_loads(engine, "companies") == []
    assert "2026-10-05" not in instance.get_materialized_partitions(api_key("hubspot", "companies"))

    hubspot.fault = None
    res = _materialize(asset, hubspot_resources, instance, key="2026-10-05")
    assert res.success
    assert len(_ids(engine, "companies")) == 150
    assert [r.rows_inserted for r in _partition_loads(engine, "companies")] == [150]


def test_the_search_splits_a_window_past_the_result_cap(hubspot: FakeHubSpot) -> None:
    from integration_assets.connectors.hubspot.client import HubSpotClient

    hubspot.search_cap = 50
    ids = set(_companies(hubspot, [D + timedelta(minutes=5 * i) for i in range(120)]))
    _companies(hubspot, [D - timedelta(minutes=1), D + DAY])  # outside: never asked for
    with HubSpotClient(
        hubspot.token, hubspot.url, search_result_cap=50, page_limit=20, search_min_interval=0
    ) as client:
        got = [r for page in client.pull_window("companies", D, D + DAY) for r in page]
        splits = client.window_splits
    assert sorted(r["id"] for r in got) == sorted(ids)  # each once
    assert splits >= 2  # 120 > 50: halves of 60 > 50 split again
    bodies = [r.body for r in hubspot.requests if r.path.endswith("/search")]
    assert all({f["operator"] for f in b["filterGroups"][0]["filters"]} == {"GTE", "LT"} for b in bodies)
    assert all(int(b.get("after") or 0) < 50 for b in bodies)  # never paged past the cap


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)  # the window is the connector's
def test_an_odoo_partition_uses_the_write_date_window(
    odoo: FakeOdoo, warehouse_url: str, instance: dg.DagsterInstance, engine: sa.Engine
) -> None:
    odoo.seed(partners=0, products=4, orders=0, lines_per_order=0, invoices=0)
    ids = sorted(odoo.models["product.product"])
    odoo.touch("product.product", [ids[0]], at=D - timedelta(seconds=1))
    odoo.touch("product.product", [ids[1]], at=D)
    odoo.touch("product.product", [ids[2]], at=D + DAY - timedelta(seconds=1))
    odoo.touch("product.product", [ids[3]], at=D + DAY)  # the next day
    res = _materialize(
        build_partitioned_asset("odoo", "product.product", load_policies()),
        {
            "odoo": OdooResource(url=odoo.url, db=odoo.db, username=odoo.login, api_key=odoo.api_key),
            "warehouse": WarehouseResource(),
        },
        instance,
        key="2026-10-05",
    )
    assert res.success
    assert _ids(engine, "products") == {str(ids[1]), str(ids[2])}
    domains = [
        r.body["params"]["args"][5][0]
        for r in odoo.requests
        if isinstance(r.body, dict) and r.body.get("params", {}).get("method") == "execute_kw"
    ]
    assert ["write_date", "<", "2026-10-06 00:00:00"] in domains[0]
    assert ["write_date", ">=", "2026-10-05 00:00:00"] in domains[0]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_the_source_job_pulls_every_entity_parents_first(
    hubspot: FakeHubSpot,
    warehouse_url: str,
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """api_hubspot as the schedule runs it: resources from the environment, companies before what points to them."""
    from integration_assets.jobs.pull import pull_definitions

    hubspot.seed(companies=3, contacts=4, deals=2, start=D + timedelta(hours=1), step=timedelta(minutes=5))
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot.token)
    monkeypatch.setenv("HUBSPOT_BASE_URL", hubspot.url)
    defs = dg.Definitions.merge(
        pull_definitions(), dg.Definitions(resources={"warehouse": WarehouseResource()})
    )
    res = defs.resolve_job_def("api_hubspot").execute_in_process(
        instance=instance, partition_key="2026-10-05"
    )
    assert res.success
    keys = [e.asset_key for e in res.get_asset_materialization_events() if e.asset_key is not None]
    order = [k.path[-1] for k in keys if k.path[0] == "api"]
    assert order.index("companies") < min(order.index("contacts"), order.index("deals"))
    counts = {t: len(_ids(engine, t)) for t in ("companies", "contacts", "deals")}
    assert counts == {"companies": 3, "contacts": 4, "deals": 2}
    with engine.connect() as conn:
        quarantined = conn.execute(sa.select(sa.func.sum(loads.c.rows_quarantined))).scalar_one()
    assert not quarantined
