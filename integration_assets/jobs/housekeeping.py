"""The ``housekeeping`` job (daily schedule): retention of the event ledger and settled dead letters."""

import dagster as dg

from integration_assets.housekeeping.retention import prune
from integration_assets.policies import load_policies
from integration_assets.resources import WarehouseResource


class HousekeepingConfig(dg.Config):
    dry_run: bool = False


@dg.op(
    description="Remove rows past policies.yaml's retention (processed_events, settled dead letters).",
    tags={"integration/kind": "housekeeping"},
)
def prune_op(
    context: dg.OpExecutionContext, config: HousekeepingConfig, warehouse: WarehouseResource
) -> dict:
    report = prune(warehouse.engine(), load_policies().retention, dry_run=config.dry_run)
    for table, n in report.removed.items():
        context.log.info(
            "%s: %s %d row(s) older than %s",
            table,
            "would remove" if config.dry_run else "removed",
            n,
            report.retention[table],
        )
    context.add_output_metadata({f"{t}_removed": n for t, n in report.removed.items()})
    return report.as_dict()


@dg.job(
    name="housekeeping",
    description="Retention: delete processed-events rows and settled dead letters "
    "older than policies.yaml's retention section (pending dead letters always stay).",
)
def housekeeping() -> None:
    prune_op()


housekeeping_schedule = dg.ScheduleDefinition(
    job=housekeeping,
    cron_schedule="41 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily at 03:41: retention of the event ledger and settled dead letters.",
)
