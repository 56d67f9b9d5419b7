"""pull_hubspot asks the shared API budget at the run's priority and reports its use as metadata."""

from __future__ import annotations

from typing import Any

import dagster as dg
import sqlalchemy as sa

from integration_assets.jobs.pull import HubSpotResource, pull_hubspot
from integration_assets.resources import WarehouseResource
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.warehouse.db import get_engine


def _observations(res: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for ev in res.all_events:
        if ev.event_type_value == "ASSET_OBSERVATION":
            obs: Any = ev.event_specific_data
            out[obs.asset_observation.asset_key.to_user_string()] = {
                k: v.value for k, v in obs.asset_observation.metadata.items()
            }
    return out


def test_pull_ops_report_budget_use_and_backfill_runs_ask_as_backfill(
    hubspot: FakeHubSpot, sqlite_warehouse: str
) -> None:
    hubspot.seed(companies=2, contacts=5, deals=1)
    resources = {
        "hubspot": HubSpotResource(access_token=hubspot.token, base_url=hubspot.url),
        "warehouse": WarehouseResource(),
    }
    with dg.instance_for_test() as instance:
        live = pull_hubspot.execute_in_process(instance=instance, resources=resources)
        backfill = pull_hubspot.execute_in_process(
            instance=instance, resources=resources, tags={"dagster/backfill": "abcdefgh"}
        )
    contacts = _observations(live)["raw/hubspot/contacts"]
    assert contacts["api_budget_priority"] == "live" and contacts["hubspot_api_requests"] >= 1
    assert contacts["hubspot_api_429"] == 0
    assert _observations(backfill)["raw/hubspot/contacts"]["api_budget_priority"] == "backfill"
    with get_engine(sqlite_warehouse).connect() as conn:
        total = conn.execute(
            sa.text("SELECT granted_total FROM api_budget WHERE api = 'hubspot'")
        ).scalar_one()
    assert total == len([r for r in hubspot.requests if r.status == 200])
