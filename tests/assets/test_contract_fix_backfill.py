"""A contract bug fixed by re-materializing the days it mis-loaded (issue 13): a wrong value map loads a week
of HubSpot deals through ``api/hubspot/deals``; the contract is fixed and that week is run again as a backfill
(the partition job with Dagster's backfill tag). The unchanged source records land files identical to the
first ones; the run loads them with force, so the rows are corrected (updated, not duplicated) and every other
week has 0 rows updated in the ledger (``loads.partition_key``). The fake HubSpot over real HTTP, SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.assets.pull import api_key
from integration_assets.resources import WarehouseResource
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.warehouse.schema import CANONICAL_TABLES, loads

FIRST = date(2026, 10, 5)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(21)]
WEEKS = [DAYS[0:7], DAYS[7:14], DAYS[14:21]]
BAD_WEEK = WEEKS[1]
CONTRACT = Path("hubspot") / "deals_api.v1.yaml"
RIGHT = "      closedlost: closedlost\n"
WRONG = "      closedlost: closedwon\n"  # the bug: lost deals load as won
DEALS = api_key("hubspot", "deals")


@pytest.fixture
def job(hubspot: FakeHubSpot, warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> dg.JobDefinition:
    """``api_hubspot_deals`` as the code location builds it, its resources from the environment."""
    from integration_assets.jobs.pull import pull_definitions

    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot.token)
    monkeypatch.setenv("HUBSPOT_BASE_URL", hubspot.url)
    defs = dg.Definitions.merge(
        pull_definitions(), dg.Definitions(resources={"warehouse": WarehouseResource()})
    )
    return defs.resolve_job_def("api_hubspot_deals")


@pytest.fixture
def instance() -> Any:
    with dg.instance_for_test() as i:
        yield i


def _seed(fake: FakeHubSpot) -> dict[str, tuple[str, str]]:
    """Per day one lost and one open deal modified that day: id -> (day, stage at the source)."""
    out = {}
    for day in DAYS:
        at = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=10)
        for stage in ("closedlost", "contractsent"):
            rid = fake.add_deal({"dealname": f"Deal {day} {stage}", "dealstage": stage, "amount": "100.00"})
            fake.touch("deals", [rid], at=at)
            out[rid] = (day, stage)
    return out


def _run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, days: list[str], *, backfill: bool = False
) -> dict[str, dict[str, Any]]:
    """One run over ``days`` (a range, as a multi_run backfill launches it); partition -> its day's metadata."""
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    if backfill:
        tags["dagster/backfill"] = "contractfix"
    res = job.execute_in_process(instance=instance, tags=tags)
    assert res.success
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in res.get_asset_materialization_events()
        if e.asset_key == DEALS and e.partition is not None
    }


def _stages(engine: sa.Engine) -> dict[str, str]:
    t = CANONICAL_TABLES["deals"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.source_id, t.c.stage)).all()
    assert len(rows) == len({r[0] for r in rows})  # one row per deal
    return {r[0]: r[1] for r in rows}


def _ledger(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """Partition key -> (rows inserted, rows updated) over every load of that day."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                loads.c.partition_key, sa.func.sum(loads.c.rows_inserted), sa.func.sum(loads.c.rows_updated)
            )
            .where(loads.c.entity == "deals", loads.c.partition_key.is_not(None))
            .group_by(loads.c.partition_key)
        ).all()
    return {k: (int(i), int(u)) for k, i, u in rows}


def test_a_week_mis_mapped_by_a_contract_bug_is_corrected_by_backfilling_it(
    hubspot: FakeHubSpot,
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    engine: sa.Engine,
    contracts_dir: Path,
) -> None:
    deals = _seed(hubspot)
    contract = contracts_dir / CONTRACT
    right = contract.read_text()
    assert RIGHT in right
    first = _run(job, instance, WEEKS[0])
    contract.write_text(right.replace(RIGHT, WRONG, 1))  # the bug ships
    first |= _run(job, instance, BAD_WEEK)
    contract.write_text(right)  # and is fixed
    first |= _run(job, instance, WEEKS[2])
    assert {d: (m["rows_inserted"], m["load_forced"]) for d, m in first.items()} == dict.fromkeys(
        DAYS, (2, False)
    )  # first pulls: not forced
    stages = _stages(engine)
    assert {deals[r] for r, s in stages.items() if s != deals[r][1]} == {(d, "closedlost") for d in BAD_WEEK}

    # The backfill of the bad week: the same records, files identical to the first ones, loaded again.
    fixed = _run(job, instance, BAD_WEEK, backfill=True)
    assert {
        d: (m["load_forced"], m["rows_inserted"], m["rows_updated"], m["rows_unchanged"], m["rows_written"])
        for d, m in fixed.items()
    } == dict.fromkeys(BAD_WEEK, (True, 0, 1, 1, 1))
    assert _stages(engine) == {r: stage for r, (_, stage) in deals.items()}  # corrected, not duplicated

    # A scheduled re-run of a day that already materialized is forced too, and writes nothing.
    again = _run(job, instance, [WEEKS[2][0]])
    assert again[WEEKS[2][0]]["load_forced"] is True and again[WEEKS[2][0]]["rows_written"] == 0
    assert again[WEEKS[2][0]]["rows_unchanged"] == 2

    # The ledger: the bad week's days were updated once each; every other day was only ever inserted.
    assert _ledger(engine) == {d: (2, 1 if d in BAD_WEEK else 0) for d in DAYS}
    with engine.connect() as conn:
        forced_loads = conn.execute(
            sa.select(sa.func.count())
            .select_from(loads)
            .where(
                loads.c.entity == "deals", loads.c.partition_key.in_(BAD_WEEK), loads.c.status == "succeeded"
            )
        ).scalar_one()
    assert forced_loads == 2 * len(BAD_WEEK)  # a ledger row per load, none counted as a duplicate file
