"""The Dagster layer: pull_hubspot / pull_odoo jobs, their pools, schedules and resources."""

from __future__ import annotations

import dagster as dg

from integration_assets.jobs.pull import HubSpotResource, OdooResource, pull_hubspot, pull_odoo
from integration_assets.resources import WarehouseResource
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.settings import get_settings
from tests.connectors.conftest import landed_records


def test_the_jobs_schedules_and_pools_are_registered() -> None:
    from integration_assets.definitions import defs

    assert defs.resolve_job_def("pull_hubspot") and defs.resolve_job_def("pull_odoo")
    for name in ("pull_hubspot_schedule", "pull_odoo_schedule"):
        assert defs.resolve_schedule_def(name).default_status == dg.DefaultScheduleStatus.STOPPED
    assert {n.pool for n in pull_hubspot.graph.node_defs} == {"hubspot_api"}
    assert {n.pool for n in pull_odoo.graph.node_defs} == {"odoo_api"}
    deps = pull_odoo.graph.dependencies
    line = next(k for k in deps if k.name == "pull_odoo__sale_order_line")
    assert [d.node for d in deps[line]["after"].get_node_dependencies()] == ["pull_odoo__sale_order"]


def test_pull_hubspot_lands_files_and_reports(hubspot: FakeHubSpot, sqlite_warehouse: str) -> None:
    hubspot.seed(companies=2, contacts=5, deals=1)
    with dg.instance_for_test() as instance:
        res = pull_hubspot.execute_in_process(
            instance=instance,
            resources={
                "hubspot": HubSpotResource(access_token=hubspot.token, base_url=hubspot.url),
                "warehouse": WarehouseResource(),
            },
        )
        assert res.success
        observed = {
            e.asset_key.to_user_string(): e.metadata["records"].value
            for e in (
                ev.event_specific_data.asset_observation
                for ev in res.all_events
                if ev.event_type_value == "ASSET_OBSERVATION"
            )
        }
    assert observed == {"raw/hubspot/companies": 2, "raw/hubspot/contacts": 5, "raw/hubspot/deals": 1}
    assert len(landed_records(get_settings().inbox_dir, "hubspot", "contacts")) == 5


def test_a_failed_pull_says_it_is_terminal(odoo: FakeOdoo, sqlite_warehouse: str) -> None:
    odoo.seed()
    with dg.instance_for_test() as instance:
        res = pull_odoo.execute_in_process(
            instance=instance,
            raise_on_error=False,
            op_selection=["pull_odoo__res_partner"],
            resources={
                "odoo": OdooResource(url=odoo.url, db=odoo.db, username=odoo.login, api_key="revoked-key"),
                "warehouse": WarehouseResource(),
            },
        )
    assert not res.success
    failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.step_failure_data
    assert data.user_failure_data.metadata["kind"].value == "terminal"
    assert "login failed" in data.user_failure_data.description and "revoked-key" not in str(data)
