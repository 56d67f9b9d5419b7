"""The file-ingest jobs with the assets and checks they run: built here once for the code location
(``definitions.py`` adds the sensors, schedules and other jobs) and for ``integration-assets sync``, which
runs these jobs in-process and so does not import the rest (alert sensors and API pull jobs: ~0.5 s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from integration_assets.assets.events import drain_events, queue_spec
from integration_assets.assets.files import build_assets, build_jobs
from integration_assets.checks import build_asset_checks
from integration_assets.checks.freshness import freshness_policy_for
from integration_assets.policies import Policies, load_policies
from integration_assets.resources import warehouse_resource


@dataclass(frozen=True)
class Core:
    """Every asset (with its source's freshness window), every asset check, and the per-entity file jobs."""

    assets: Sequence[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    check_keys: list[dg.AssetCheckKey]
    file_jobs: list[dg.UnresolvedAssetJobDefinition]


def build_core(policies: Policies) -> Core:
    # Global policy: every asset gets its source's freshness window (an asset that sets its own keeps it).
    assets = dg.map_asset_specs(
        lambda spec: dg.apply_freshness_policy(
            spec, freshness_policy_for(spec.key, policies, spec.group_name), overwrite_existing=False
        ),
        [*build_assets(), drain_events],
    )
    checks = build_asset_checks([k for a in assets for k in a.keys], policies)
    check_keys = [k for c in checks for k in c.check_keys]
    return Core(assets, checks, check_keys, build_jobs(check_keys))


def file_run_definitions() -> dg.Definitions:
    """What an in-process run of a file job needs: the same assets, checks, jobs and resources as the code
    location, without its sensors and schedules."""
    core = build_core(load_policies())
    return dg.Definitions(
        assets=[*core.assets, queue_spec],
        asset_checks=core.checks,
        jobs=core.file_jobs,
        resources={"warehouse": warehouse_resource()},
    )
