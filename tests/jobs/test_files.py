"""``sync`` runs the file jobs from a narrower Definitions than the code location: the jobs must be the same."""

from __future__ import annotations

import dagster as dg

from integration_assets.assets.files import job_name
from integration_assets.contracts.spec import known_entities
from integration_assets.jobs.files import file_run_definitions


def _job(defs: dg.Definitions, name: str) -> dict:
    job = defs.resolve_job_def(name)
    graph = job.asset_layer.asset_graph
    return {
        "ops": sorted(n.name for n in job.graph.nodes),
        "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
        "checks": sorted(
            k.to_user_string() for k in graph.asset_check_keys if graph.get(k.asset_key).is_executable
        ),
        # The code location binds its API resources too; what the job's ops and checks ask for is what counts.
        "resources": sorted(
            {k for d in job.graph.node_defs for k in getattr(d, "required_resource_keys", ())}
        ),
        "tags": dict(job.tags),
    }


def test_sync_runs_the_code_locations_file_jobs() -> None:
    from integration_assets.definitions import defs

    narrow = file_run_definitions()
    names = {job_name(system, entity) for system, entity, _ in known_entities()}
    assert names and names <= {j.name for j in narrow.resolve_all_job_defs()}
    for name in sorted(names):
        assert _job(narrow, name) == _job(defs, name), name
    assert narrow.sensors is None or not list(narrow.sensors)  # what sync skips importing
