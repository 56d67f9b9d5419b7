"""The outbound jobs: ``run_outbound`` (relay + every step once, launched by ``outbound_sensor``) and
``outbound_checks`` (backlog, stuck chains and reconciliation, on a schedule: alerts come from
``asset_check_alerts`` like every other check)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from integration_assets.assets.outbound import RUN_JOB, run_outbound_steps

CHECKS_JOB = "outbound_checks"
# Every 10 minutes: the backlog's oldest_warn is 15m by default, so a stalled step is seen within it.
CHECKS_CRON = "*/10 * * * *"

run_outbound = dg.define_asset_job(
    RUN_JOB,
    selection=dg.AssetSelection.assets(run_outbound_steps).without_checks(),
    description="Relay the outbox to the step queues, then run each outbound step once (odoo_order, compensate, "
    "easypost_label, odoo_tracking, hubspot_writeback, hubspot_tracking). Launched by outbound_sensor.",
    executor_def=dg.in_process_executor,  # one op: a subprocess per run would cost more than a small batch
    tags={"integration/kind": "outbound"},
)


def build_outbound_checks_job(
    check_keys: Sequence[dg.AssetCheckKey],
) -> tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """The job that evaluates the outbound checks, and its schedule (RUNNING by default)."""
    job = dg.define_asset_job(
        CHECKS_JOB,
        selection=dg.AssetSelection.checks(*check_keys),
        description="The outbound checks: backlog per step, stuck chains, reconciliation (won deals vs orders, "
        "shippable orders vs labels).",
        executor_def=dg.in_process_executor,
        tags={"integration/kind": "outbound"},
    )
    schedule = dg.ScheduleDefinition(
        name="outbound_checks_schedule",
        job=job,
        cron_schedule=CHECKS_CRON,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every 10 minutes: the outbound checks (alerts come from asset_check_alerts).",
    )
    return job, schedule
