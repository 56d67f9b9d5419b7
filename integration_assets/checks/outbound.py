"""Asset checks on the outbound chain, wrapping the plain-Python decisions of ``outbound/health.py``:

- ``outbound_backlog`` on ``outbound/odoo/sale_orders`` (the chain's entry): outbox rows not relayed + step
  queue depth, and the oldest waiting message, against ``outbound.backlog`` (tiered WARN / ERROR);
- ``outbound_stuck_chains`` on ``outbound/odoo/sale_orders``: deals won without an order, confirmed (paid)
  orders without a label, past ``outbound.stuck``;
- ``outbound_reconciliation`` on ``outbound/easypost/labels`` (+ the orders): every won deal exactly one Odoo
  order, every shippable order exactly one purchased label; mismatches in ``reconciliation_mismatches``.

Severity, blocking flag and runbook come from policies.yaml ``checks:``; ``asset_check_alerts`` raises an
incident for a failure (``check:outbound/…:<name>``) with that runbook. The ``outbound_checks`` job runs
them every 10 minutes; the hourly ``quality_checks`` job runs them too.
"""

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from integration_assets.assets.files import OWNERS
from integration_assets.assets.outbound import LABELS, SALE_ORDERS
from integration_assets.checks.canonical import CHECK_TAG, to_result
from integration_assets.observability.logging import correlation
from integration_assets.outbound import health
from integration_assets.policies import CheckName, Policies
from integration_assets.quality.outcome import CheckOutcome
from integration_assets.resources import WarehouseResource


@dataclass(frozen=True)
class OutboundCheck:
    name: CheckName
    asset: dg.AssetKey
    text: str
    run: Callable[[sa.Engine, Policies, str], CheckOutcome]
    additional: tuple[dg.AssetKey, ...] = ()


CHECKS = (
    OutboundCheck(
        health.BACKLOG,
        SALE_ORDERS,
        "Outbound backlog per step: outbox rows not yet relayed plus messages on the step queues, and the "
        "oldest one's age, against policies.yaml outbound.backlog (WARN / ERROR tiers).",
        lambda engine, policies, run_id: health.check_backlog(engine, policies),
    ),
    OutboundCheck(
        health.STUCK,
        SALE_ORDERS,
        "Stuck chains: a deal won longer than outbound.stuck.order_after ago without an Odoo order, or a "
        "confirmed (and, by policy, paid) order without a label after outbound.stuck.label_after.",
        lambda engine, policies, run_id: health.check_stuck(engine, policies),
    ),
    OutboundCheck(
        health.RECONCILIATION,
        LABELS,
        "Every won deal has exactly one Odoo order (ledger, chain and pulled sales_orders by client_order_ref "
        "hubspot-deal:<id>), every shippable order exactly one purchased label; mismatches with ids in the "
        "metadata and in reconciliation_mismatches.",
        lambda engine, policies, run_id: health.check_reconciliation(engine, policies, run_id=run_id),
        (SALE_ORDERS,),
    ),
)


def _describe(policies: Policies, check: OutboundCheck) -> str:
    p = policies.check(check.name)
    return f"{check.text} Severity {p.severity}{', blocking' if p.blocking else ''}. Runbook: {p.runbook}"


def build_check(check: OutboundCheck, policies: Policies) -> dg.AssetChecksDefinition:
    policy = policies.check(check.name)

    @dg.asset_check(
        asset=check.asset,
        name=check.name,
        description=_describe(policies, check),
        blocking=policy.blocking,
        additional_deps=list(check.additional),
        op_tags={CHECK_TAG: check.name},
        metadata={"owners": ", ".join(OWNERS), "severity": policy.severity, "blocking": policy.blocking},
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with correlation(
            run_id=context.run.run_id, asset_key=check.asset.to_user_string(), check_name=check.name
        ):
            outcome = check.run(warehouse.engine(), policies, context.run.run_id)
        context.log.info(
            "%s: %s (%s) %s", check.name, outcome.status, outcome.severity, outcome.description[:300]
        )
        return to_result(outcome)

    return _check


def build_outbound_checks(policies: Policies) -> list[dg.AssetChecksDefinition]:
    return [build_check(c, policies) for c in CHECKS]
