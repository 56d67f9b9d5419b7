"""Dagster asset checks on the canonical ``warehouse/<table>`` assets, built from the plain-Python quality checks.

Every canonical asset gets: ``volume``, ``quarantine_rate``, ``dead_letter_backlog``, ``drift``, ``keys``
(blocking), ``gx_suite``; tables with references get ``referential_integrity``; and three reconciliation
checks sit on one side of each comparison with the other side as an additional dependency:
``reconcile_deals_orders`` on sales_orders (+deals), ``reconcile_customers_companies`` on customers
(+companies), ``reconcile_invoices_payments`` on invoices (+payments once that asset exists).

Severity, blocking flag and runbook come from policies.yaml. Checks run in the same run as the asset they
check (the ingest jobs select them), so a failing blocking check fails that run and skips what depends on
the asset in it.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dagster as dg

from integration_assets.alerts import runbook
from integration_assets.assets.files import OWNERS, canonical_key
from integration_assets.checks import dagster_internals
from integration_assets.contracts.spec import known_entities
from integration_assets.observability.logging import correlation
from integration_assets.policies import CheckName, Policies
from integration_assets.quality import expectations, integrity, ledger_checks, reconciliation
from integration_assets.quality.outcome import CheckOutcome
from integration_assets.resources import WarehouseResource
from integration_assets.warehouse.schema import CANONICAL_TABLES

CHECK_TAG = "integration/check"


@dataclass(frozen=True)
class CheckSpec:
    """One check on one canonical table: what it is called, what it says, what it runs."""

    name: CheckName
    table: str
    description: str
    run: Callable[[dg.AssetCheckExecutionContext, WarehouseResource, Policies], CheckOutcome]
    additional_tables: tuple[str, ...] = ()


def _in_tx(fn: Callable[..., CheckOutcome], *args: Any, **kwargs: Any) -> Callable[..., CheckOutcome]:
    def run(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, policies: Policies
    ) -> CheckOutcome:
        with warehouse.engine().begin() as conn:
            return fn(conn, *args, policies, **kwargs)

    return run


def _backlog(table: str) -> Callable[..., CheckOutcome]:
    def run(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, policies: Policies
    ) -> CheckOutcome:
        key = dg.AssetCheckKey(canonical_key(table), "dead_letter_backlog")
        since = dagster_internals.previous_evaluation_time(
            context.instance, key, exclude_run_id=context.run.run_id
        )
        with warehouse.engine().connect() as conn:
            return ledger_checks.dead_letter_backlog(conn, table, policies, since=since)

    return run


def _gx(table: str) -> Callable[..., CheckOutcome]:
    def run(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, policies: Policies
    ) -> CheckOutcome:
        url = warehouse.engine().url.render_as_string(hide_password=False)  # handed to GX only, never logged
        return expectations.run_suite(url, table, policies)

    return run


def _reconcile(fn: Callable[..., CheckOutcome]) -> Callable[..., CheckOutcome]:
    def run(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, policies: Policies
    ) -> CheckOutcome:
        with warehouse.engine().begin() as conn:
            return fn(conn, policies, run_id=context.run.run_id)

    return run


def _sources(table: str) -> tuple[str | None, str | None]:
    """(system, entity) feeding ``table`` when it is exactly one, for the runbook's placeholders."""
    fed_by = {(s, e) for s, e, t in known_entities() if t == table}
    return next(iter(fed_by)) if len(fed_by) == 1 else (None, None)


def _describe(policies: Policies, name: CheckName, text: str, table: str) -> str:
    """The check's description as the UI shows it (Markdown): what it checks, severity, and the runbook with
    the table's source system and entity filled in."""
    p = policies.check(name)
    tier = f" (zero rows: {p.zero_rows_severity})" if p.zero_rows_severity else ""
    system, entity = _sources(table)
    steps = runbook.markdown(runbook.fill(p.runbook, system=system, entity=entity))
    return (
        f"{runbook.markdown(text)} Severity {p.severity}{tier}{', blocking' if p.blocking else ''}.\n\n"
        f"**Runbook:** {steps}"
    )


def check_specs(
    tables: Iterable[str], policies: Policies, *, has_payments_asset: bool = False
) -> list[CheckSpec]:
    """Every check for the canonical ``tables`` present in the code location."""
    present = set(tables)
    specs: list[CheckSpec] = []
    for table in sorted(present):
        if table not in CANONICAL_TABLES:
            continue
        specs += [
            CheckSpec(
                "volume",
                table,
                _describe(policies, "volume", ledger_checks.VOLUME_DESCRIPTION, table),
                _in_tx(ledger_checks.volume, table),
            ),
            CheckSpec(
                "quarantine_rate",
                table,
                _describe(
                    policies,
                    "quarantine_rate",
                    "Share of rows the latest load(s) quarantined to dead_letters.",
                    table,
                ),
                _in_tx(ledger_checks.quarantine_rate, table),
            ),
            CheckSpec(
                "dead_letter_backlog",
                table,
                _describe(
                    policies,
                    "dead_letter_backlog",
                    "Pending dead letters of the source entity: count, oldest pending age, new since the last check.",
                    table,
                ),
                _backlog(table),
            ),
            CheckSpec(
                "drift",
                table,
                _describe(
                    policies,
                    "drift",
                    "New/missing columns and unknown dropdown values recorded against the current "
                    "contract version(s) that the contract still does not handle.",
                    table,
                ),
                _in_tx(ledger_checks.drift, table),
            ),
            CheckSpec(
                "keys",
                table,
                _describe(
                    policies,
                    "keys",
                    "Natural keys present and unique: (source_system, source_id), required "
                    "columns and business keys from policies.yaml.",
                    table,
                ),
                _in_tx(integrity.keys, table),
            ),
            CheckSpec(
                "gx_suite",
                table,
                _describe(
                    policies,
                    "gx_suite",
                    "Great Expectations 1.x suite: lineage not null, key unique, enum columns "
                    "within their contracts' vocabularies, amounts not negative, currency codes, date order.",
                    table,
                ),
                _gx(table),
            ),
        ]
        refs = policies.integrity.references_from(table)
        parents = tuple(sorted({r.parent for r in refs if r.parent in present}))
        if refs:
            specs.append(
                CheckSpec(
                    "referential_integrity",
                    table,
                    _describe(
                        policies,
                        "referential_integrity",
                        "Every reference resolves: "
                        + ", ".join(f"{r.name} ({r.severity})" for r in refs)
                        + ".",
                        table,
                    ),
                    _in_tx(integrity.referential, table),
                    parents,
                )
            )
    if "sales_orders" in present:
        specs.append(
            CheckSpec(
                "reconcile_deals_orders",
                "sales_orders",
                _describe(
                    policies,
                    "reconcile_deals_orders",
                    "HubSpot closed-won deals vs Odoo confirmed orders (state sale/done), linked by "
                    "sales_orders.client_order_ref = deals.source_id; mismatches in reconciliation_mismatches.",
                    "sales_orders",
                ),
                _reconcile(reconciliation.deals_orders),
                tuple(t for t in ("deals",) if t in present),
            )
        )
    if "customers" in present:
        specs.append(
            CheckSpec(
                "reconcile_customers_companies",
                "customers",
                _describe(
                    policies,
                    "reconcile_customers_companies",
                    "Odoo companies (is_company) vs HubSpot companies, linked by companies.odoo_partner_id = "
                    "customers.source_id, unmatched on either side; mismatches in reconciliation_mismatches.",
                    "customers",
                ),
                _reconcile(reconciliation.customers_companies),
                tuple(t for t in ("companies",) if t in present),
            )
        )
    if "invoices" in present:
        specs.append(
            CheckSpec(
                "reconcile_invoices_payments",
                "invoices",
                _describe(
                    policies,
                    "reconcile_invoices_payments",
                    "Posted Odoo invoices vs Stripe succeeded payments, totals per day and currency; not evaluated "
                    "(reported as such, never as a pass) until the payments table exists.",
                    "invoices",
                ),
                _reconcile(reconciliation.invoices_payments),
                ("payments",) if has_payments_asset else (),
            )
        )
    return specs


def to_result(outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=bool(outcome.passed),
        severity=dg.AssetCheckSeverity(outcome.severity),
        description=outcome.description[:2000],
        metadata={"status": outcome.status, **dict(outcome.metadata)},
    )


def build_check(spec: CheckSpec, policies: Policies) -> dg.AssetChecksDefinition:
    policy = policies.check(spec.name)

    @dg.asset_check(
        asset=canonical_key(spec.table),
        name=spec.name,
        description=spec.description,
        blocking=policy.blocking,
        additional_deps=[canonical_key(t) for t in spec.additional_tables],
        op_tags={CHECK_TAG: spec.name},
        metadata={"owners": ", ".join(OWNERS), "severity": policy.severity, "blocking": policy.blocking},
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with correlation(
            run_id=context.run.run_id,
            asset_key=canonical_key(spec.table).to_user_string(),
            check_name=spec.name,
        ):
            outcome = spec.run(context, warehouse, policies)
        context.log.info(
            "%s on %s: %s (%s) %s",
            spec.name,
            spec.table,
            outcome.status,
            outcome.severity,
            outcome.description[:300],
        )
        return to_result(outcome)

    return _check


def build_asset_checks(
    asset_keys: Iterable[dg.AssetKey], policies: Policies
) -> list[dg.AssetChecksDefinition]:
    """The asset checks for every canonical ``warehouse/<table>`` among ``asset_keys``."""
    keys = set(asset_keys)
    tables = [t for t in CANONICAL_TABLES if canonical_key(t) in keys]
    has_payments = dg.AssetKey(["warehouse", "payments"]) in keys
    return [build_check(s, policies) for s in check_specs(tables, policies, has_payments_asset=has_payments)]
