"""The file-ingest jobs with the assets and checks they run: built here once for the code location
(``definitions.py`` adds the sensors, schedules, other jobs and the global policy) and for
``integration-assets sync``, which runs these jobs in-process and so does not import the rest (alert sensors
and API pull jobs: ~0.5 s)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from integration_assets.assets.events import drain_events, queue_spec
from integration_assets.assets.files import build_assets, build_jobs
from integration_assets.checks import build_asset_checks
from integration_assets.checks.inrun import evaluate_checks
from integration_assets.policies import Policies, load_policies
from integration_assets.resources import warehouse_resource


@dataclass(frozen=True)
class Core:
    """Every asset, every asset check, and the per-entity file jobs (global policy: ``definitions.py``)."""

    assets: Sequence[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    check_keys: list[dg.AssetCheckKey]
    file_jobs: list[dg.UnresolvedAssetJobDefinition]


def build_core(policies: Policies) -> Core:
    assets: Sequence[dg.AssetsDefinition] = [*build_assets(settle=evaluate_checks), drain_events]
    checks = build_asset_checks([k for a in assets for k in a.keys], policies)
    check_keys = [k for c in checks for k in c.check_keys]
    return Core(assets, checks, check_keys, build_jobs(check_keys))


def file_run_definitions() -> dg.Definitions:
    """What an in-process run of a file job needs: the same assets, checks, jobs and resources as the code
    location, without its sensors, schedules and freshness windows (they do not change a run)."""
    core = build_core(load_policies())
    return dg.Definitions(
        assets=[*core.assets, queue_spec],
        asset_checks=core.checks,
        jobs=core.file_jobs,
        resources={"warehouse": warehouse_resource()},
    )


def failed_blocking_checks(res: Any) -> list[str]:
    """The blocking checks that failed with severity ERROR in a run (what stops the rest of that run)."""
    return sorted(
        {
            f"{e.asset_key.to_user_string()}:{e.check_name}"
            for e in res.get_asset_check_evaluations()
            if not e.passed and e.blocking and e.severity == dg.AssetCheckSeverity.ERROR
        }
    )


def only_checks_failed(res: Any) -> bool:
    """Whether a failed run failed only because a blocking check did: the loads ran, their data is committed."""
    failures = res.get_step_failure_events()
    return bool(failures) and all(
        e.event_specific_data is not None
        and e.event_specific_data.error is not None
        and e.event_specific_data.error.cls_name == "DagsterAssetCheckFailedError"
        for e in failures
    )
