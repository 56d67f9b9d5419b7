"""The Dagster code location. Thin: gathers each layer's definitions and applies project-wide policy here."""

from __future__ import annotations

import dagster as dg

from integration_assets.assets.events import drain_events_job, queue_spec
from integration_assets.assets.files import canonical_key
from integration_assets.assets.outbound import run_outbound_steps
from integration_assets.assets.pull import API_TABLES, PARTITIONED_ASSETS
from integration_assets.assets.stripe_pull import (
    STRIPE_EVENTS_KEY,
    STRIPE_EVENTS_TABLE,
    stripe_pull_definitions,
)
from integration_assets.checks.freshness import freshness_policy_for
from integration_assets.checks.outbound import build_outbound_checks
from integration_assets.checks.scope import build_quality_schedule, check_inputs
from integration_assets.jobs.files import build_core
from integration_assets.jobs.housekeeping import housekeeping, housekeeping_schedule
from integration_assets.jobs.inbox import tidy_inbox
from integration_assets.jobs.outbound import build_outbound_checks_job, run_outbound
from integration_assets.jobs.pull import pull_definitions
from integration_assets.jobs.replay import replay_dead_letters
from integration_assets.policies import load_policies
from integration_assets.resources import warehouse_resource
from integration_assets.sensors.alerts import build_alert_sensors
from integration_assets.sensors.events import build_events_sensor
from integration_assets.sensors.inbox import build_inbox_sensor
from integration_assets.sensors.outbound import build_outbound_sensor


def _with_api_upstream(spec: dg.AssetSpec) -> dg.AssetSpec:
    upstream = [PARTITIONED_ASSETS[k] for k, t in API_TABLES.items() if canonical_key(t) == spec.key]
    if spec.key == canonical_key(STRIPE_EVENTS_TABLE):  # the Stripe events pull applies events to payments
        upstream.append(STRIPE_EVENTS_KEY)
    if not upstream:
        return spec
    return spec.replace_attributes(deps=[*spec.deps, *(dg.AssetDep(k) for k in upstream)])


def build_definitions() -> dg.Definitions:
    policies = load_policies()  # policies.yaml, or INTEGRATION_POLICIES_FILE
    core = build_core(policies)
    checks, check_keys, file_jobs = core.checks, core.check_keys, core.file_jobs
    # Global policy: every asset gets its source's freshness window (an asset that sets its own keeps it).
    assets = dg.map_asset_specs(
        lambda spec: dg.apply_freshness_policy(
            spec, freshness_policy_for(spec.key, policies, spec.group_name), overwrite_existing=False
        ),
        core.assets,
    )
    # The partitioned API pulls (jobs/pull.py) load into the canonical tables: each is upstream of its table.
    assets = dg.map_asset_specs(_with_api_upstream, assets)
    # The outbound chain: the default freshness window (its assets materialize only when a hop moved a chain;
    # no alert comes from it, a stalled chain is what the backlog and stuck-chain checks catch), its own checks
    # job every 10 minutes, and the hourly quality run.
    outbound_assets = dg.map_asset_specs(
        lambda spec: dg.apply_freshness_policy(
            spec, freshness_policy_for(spec.key, policies, spec.group_name), overwrite_existing=False
        ),
        [run_outbound_steps],
    )
    outbound_checks = build_outbound_checks(policies)
    outbound_check_keys = [k for c in outbound_checks for k in c.check_keys]
    outbound_checks_job, outbound_checks_schedule = build_outbound_checks_job(outbound_check_keys)
    checks = [*checks, *outbound_checks]
    quality_job = dg.define_asset_job(
        "quality_checks",
        selection=dg.AssetSelection.checks(*check_keys, *outbound_check_keys),
        description="Every asset check on the warehouse, incl. the Great Expectations suites and reconciliations.",
        executor_def=dg.in_process_executor,  # SQL reads: one process, not one per check
    )
    quality_schedule = build_quality_schedule(quality_job, check_inputs(checks))  # what changed, hourly
    return dg.Definitions(
        assets=[*assets, queue_spec, *outbound_assets],  # queue: observed, not materialized
        asset_checks=checks,
        jobs=[
            *file_jobs,
            tidy_inbox,
            quality_job,
            replay_dead_letters,
            drain_events_job,
            housekeeping,
            run_outbound,
            outbound_checks_job,
        ],
        schedules=[quality_schedule, housekeeping_schedule, outbound_checks_schedule],
        sensors=[
            build_inbox_sensor([*file_jobs, tidy_inbox]),
            build_events_sensor(drain_events_job),
            build_outbound_sensor(run_outbound),
            *build_alert_sensors(assets, checks, policies),  # checks incl. the outbound ones: they alert too
        ],
        resources={"warehouse": warehouse_resource()},
    )


defs = dg.Definitions.merge(build_definitions(), pull_definitions(), stripe_pull_definitions())
