"""Which checks the scheduled ``quality_checks`` run needs to evaluate: what changed since their last evaluation.

Every path that materializes a canonical asset evaluates that asset's checks in the same run
(``checks.inrun``), so most checks are current when the hourly schedule ticks. A check is due when:

- it never completed an evaluation, or its latest run did not complete it (crashed, skipped);
- its asset or one of its additional dependencies (the other side of a reconciliation, a reference's
  parent) was materialized after its latest evaluation;
- its outcome depends on time or on things other than its asset's data (``ALWAYS``): the dead-letter
  backlog ages, reconciliations have grace windows and read other systems' tables, drift reads the contracts
  as they are now, and the outbound checks watch a live chain. These are cheap SQL reads.

Once a day (``FULL_HOUR``) every check runs, so a contract or policy change reaches the Great Expectations
suites too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from integration_assets.checks import dagster_internals

ALWAYS = frozenset(
    {
        "dead_letter_backlog",
        "drift",
        "reconcile_deals_orders",
        "reconcile_customers_companies",
        "reconcile_invoices_payments",
        "outbound_backlog",
        "outbound_stuck_chains",
        "outbound_reconciliation",
    }
)
FULL_HOUR = 3  # UTC hour of the daily run of every check


def check_inputs(
    checks: Iterable[dg.AssetsDefinition],
) -> dict[dg.AssetCheckKey, tuple[dg.AssetKey, ...]]:
    """Each check's key -> the assets whose data it reads (its asset and its additional dependencies)."""
    out: dict[dg.AssetCheckKey, tuple[dg.AssetKey, ...]] = {}
    for definition in checks:
        for spec in definition.check_specs:
            out[spec.key] = (spec.asset_key, *(d.asset_key for d in spec.additional_deps))
    return out


def due_checks(
    instance: dg.DagsterInstance, inputs: Mapping[dg.AssetCheckKey, Sequence[dg.AssetKey]]
) -> list[dg.AssetCheckKey]:
    """The checks among ``inputs`` whose evaluation is out of date (see the module docstring), sorted."""
    keys = sorted(inputs, key=lambda k: k.to_user_string())
    evaluated = dagster_internals.last_evaluated(instance, keys)
    materialized = dagster_internals.last_materialized(
        instance, sorted({a for v in inputs.values() for a in v})
    )
    due = []
    for key in keys:
        at = evaluated.get(key)
        if key.name in ALWAYS or at is None or any(materialized.get(a, 0.0) > at for a in inputs[key]):
            due.append(key)
    return due


def build_quality_schedule(
    job: dg.UnresolvedAssetJobDefinition, inputs: Mapping[dg.AssetCheckKey, Sequence[dg.AssetKey]]
) -> dg.ScheduleDefinition:
    """Hourly: the checks that are due, in one run; every check once a day."""

    @dg.schedule(
        name="quality_checks_schedule",
        job=job,
        cron_schedule="17 * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Hourly: the checks whose data changed since their last evaluation, plus the time-dependent "
        f"ones (backlog ages, reconciliation grace, drift, outbound); every check at {FULL_HOUR:02d}:17 UTC. "
        "Alerts come from the check sensor.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        full = (
            context.scheduled_execution_time is not None
            and context.scheduled_execution_time.hour == FULL_HOUR
        )
        keys = (
            sorted(inputs, key=lambda k: k.to_user_string()) if full else due_checks(context.instance, inputs)
        )
        if not keys:
            return dg.SkipReason("every check is current: nothing changed since its last evaluation")
        return dg.RunRequest(
            asset_check_keys=keys,
            tags={"integration/quality_scope": "full" if full else f"{len(keys)} of {len(inputs)} due"},
        )

    return _schedule
