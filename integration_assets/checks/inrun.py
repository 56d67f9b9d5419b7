"""Asset checks evaluated inside the op that wrote (or did not write) a canonical table.

The UI ties a check's evaluation to the asset's latest materialization: an evaluation from the same run, or
one whose target is that materialization. A path that materializes ``warehouse/<table>`` without running the
checks (an event drain, a dead-letter replay) would leave every check "Not Evaluated" while ``status`` and
the alerts still read the older evaluations. So those paths evaluate the table's checks in the same op, with
the same code as the checks' own steps (``checks.canonical``), and log the evaluations. A run that planned
the checks but loaded nothing new evaluates them the same way, since a skipped check step would show
"Skipped" instead of the last real result.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import dagster as dg

from integration_assets.assets.files import canonical_key
from integration_assets.checks import dagster_internals
from integration_assets.checks.canonical import CheckSpec, check_specs, to_result
from integration_assets.observability.logging import correlation
from integration_assets.policies import Policies, load_policies
from integration_assets.resources import WarehouseResource
from integration_assets.warehouse.schema import CANONICAL_TABLES

_built: list[tuple[Policies, dict[str, list[CheckSpec]]]] = []  # the latest policies' specs


def _specs(policies: Policies) -> dict[str, list[CheckSpec]]:
    """Every canonical table's checks, as the code location defines them (built once per policies object:
    ``load_policies`` returns the same one until the file changes)."""
    if _built and _built[0][0] is policies:
        return _built[0][1]
    out: dict[str, list[CheckSpec]] = {}
    for spec in check_specs(CANONICAL_TABLES, policies, has_payments_asset=True):
        out.setdefault(spec.table, []).append(spec)
    _built[:] = [(policies, out)]
    return out


def check_keys(table: str, policies: Policies | None = None) -> list[dg.AssetCheckKey]:
    return [
        dg.AssetCheckKey(canonical_key(table), s.name)
        for s in _specs(policies or load_policies()).get(table, [])
    ]


def evaluate_checks(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    tables: Iterable[str],
    warehouse: WarehouseResource,
    *,
    planned_only: bool = False,
) -> list[dg.AssetCheckEvaluation]:
    """Evaluate every check of ``tables`` (only those this run planned and left unevaluated, with
    ``planned_only``) and log the evaluations; a failing blocking check does not fail the op."""
    policies = load_policies()
    instance, run_id = context.instance, context.run.run_id
    out: list[dg.AssetCheckEvaluation] = []
    for table in sorted(set(tables)):
        specs = _specs(policies).get(table, [])
        if planned_only:
            planned = set(dagster_internals.planned_in_run(instance, run_id, check_keys(table, policies)))
            specs = [s for s in specs if dg.AssetCheckKey(canonical_key(table), s.name) in planned]
        for spec in specs:
            key = dg.AssetCheckKey(canonical_key(table), spec.name)
            try:
                with correlation(
                    run_id=run_id, asset_key=key.asset_key.to_user_string(), check_name=spec.name
                ):
                    # The checks read only the instance and the run id from their context, which an op has too.
                    outcome = spec.run(cast(dg.AssetCheckExecutionContext, context), warehouse, policies)
            except Exception:  # noqa: BLE001 - the data is written; a check that crashes must not fail the write
                # No evaluation is recorded, so the UI shows this check Not Evaluated: true, and visible.
                context.log.exception("%s on %s could not be evaluated", spec.name, table)
                continue
            result = to_result(outcome)
            evaluation = dagster_internals.evaluation(
                instance,
                key,
                passed=result.passed,
                severity=result.severity,
                description=result.description,
                metadata=result.metadata or {},
                blocking=policies.check(spec.name).blocking,
            )
            context.log.info(
                "%s on %s: %s (%s) %s",
                spec.name,
                table,
                outcome.status,
                outcome.severity,
                outcome.description[:300],
            )
            context.log_event(evaluation)  # type: ignore[arg-type]  # accepted at runtime, not in the type alias
            out.append(evaluation)
    return out
