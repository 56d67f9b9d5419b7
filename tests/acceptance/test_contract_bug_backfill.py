"""Issue 13 acceptance: a contract bug mis-maps a week of deals; the contract is fixed and that week alone is
backfilled (``integration-assets backfill``, run by the backfill daemon's iteration). The week's rows are
corrected (updated in place, not duplicated) and the ledger shows 0 rows written for every other day. The fake
HubSpot over real HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli.backfill import backfill
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.warehouse.schema import CANONICAL_TABLES, loads
from tests.acceptance.conftest import launched_id, run_backfill
from tests.support.contracts import contracts_dir

__all__ = ["contracts_dir"]

FIRST = date(2026, 10, 5)
DAYS = [(FIRST + timedelta(days=i)).isoformat() for i in range(21)]  # three weeks
BAD_WEEK = DAYS[7:14]
CONTRACT = Path("hubspot") / "deals_api.v1.yaml"
RIGHT = "      closedlost: closedlost\n"
WRONG = "      closedlost: closedwon\n"  # the bug: lost deals load as won


def _seed(fake: FakeHubSpot) -> dict[str, str]:
    """One lost deal modified on each day: id -> day."""
    out = {}
    for day in DAYS:
        rid = fake.add_deal({"dealname": f"Deal {day}", "dealstage": "closedlost", "amount": "100.00"})
        fake.touch("deals", [rid], at=datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(hours=10))
        out[rid] = day
    return out


def _load(instance: dg.DagsterInstance, days: list[str]) -> None:
    from integration_assets.definitions import defs

    job = defs.resolve_job_def("api_hubspot_deals")
    for day in days:
        assert job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False).success


def _stages(engine: sa.Engine) -> dict[str, str]:
    t = CANONICAL_TABLES["deals"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.source_id, t.c.stage)).all()
    assert len(rows) == len({r[0] for r in rows})  # one row per deal
    return {r[0]: r[1] for r in rows}


def _load_ids(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(loads.c.load_id)).scalars())


def _written_except(engine: sa.Engine, before: set[str]) -> dict[str, int]:
    """Rows written per partition by the loads not in ``before`` (ids, not times: a load of the previous step
    may start within the same clock tick as the backfill)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                loads.c.load_id,
                loads.c.partition_key,
                loads.c.rows_inserted + loads.c.rows_updated,
            ).where(loads.c.entity == "deals", loads.c.partition_key.is_not(None))
        ).all()
    written: dict[str, int] = {}
    for load_id, key, n in rows:
        if load_id not in before:
            written[key] = written.get(key, 0) + int(n)
    return written


def test_a_week_loaded_with_a_wrong_value_map_is_corrected_by_backfilling_that_week(
    hubspot: FakeHubSpot, instance: dg.DagsterInstance, engine: sa.Engine, contracts_dir: Path
) -> None:
    deals = _seed(hubspot)
    contract = contracts_dir / CONTRACT
    right = contract.read_text()
    assert RIGHT in right
    _load(instance, DAYS[:7])
    contract.write_text(right.replace(RIGHT, WRONG, 1))  # the bug ships
    _load(instance, BAD_WEEK)
    contract.write_text(right)  # and is fixed
    _load(instance, DAYS[14:])
    stages = _stages(engine)
    assert {d for rid, d in deals.items() if stages[rid] == "closedwon"} == set(BAD_WEEK)

    before = _load_ids(engine)
    res = CliRunner().invoke(backfill, ["hubspot", "deals", "--from", BAD_WEEK[0], "--to", BAD_WEEK[-1]])
    assert res.exit_code == 0, res.output
    run_backfill(instance, launched_id(res.output))

    stages = _stages(engine)
    assert set(stages) == set(deals) and set(stages.values()) == {"closedlost"}  # corrected, not duplicated
    written = _written_except(engine, before)
    assert written == dict.fromkeys(BAD_WEEK, 1)  # one row updated per day of that week, no other day touched
    with engine.connect() as conn:
        updated = conn.execute(
            sa.select(sa.func.sum(loads.c.rows_updated), sa.func.sum(loads.c.rows_inserted)).where(
                loads.c.entity == "deals", loads.c.partition_key.in_(BAD_WEEK)
            )
        ).one()
    assert (int(updated[0]), int(updated[1])) == (
        7,
        7,
    )  # inserted once by the bad load, updated by the backfill
