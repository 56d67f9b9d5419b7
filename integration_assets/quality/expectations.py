"""A Great Expectations 1.x suite per canonical warehouse table, run against the warehouse URL.

The suites say what every row must look like whatever the source: lineage columns present, the primary key
unique, enum columns only holding the canonical values their contracts map to (taken from the contracts, so
a new dropdown value is one contract edit), amounts not negative, currencies three letters, due dates not
before invoice dates. Works on SQLite and PostgreSQL (no regex expectations: SQLite has no REGEXP).

GX is imported lazily (about 3-4 s) and gets one ephemeral context per evaluation, since datasource, suite
and validation names must be unique per context. Progress bars are off (they would go to stderr).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integration_assets.contracts.spec import all_contracts
from integration_assets.policies import Policies
from integration_assets.quality.outcome import CheckOutcome, entities_for_table, pii_columns
from integration_assets.warehouse.db import normalise_url
from integration_assets.warehouse.schema import CANONICAL_TABLES

SAMPLE = 10


@dataclass(frozen=True)
class Expectation:
    """One GX expectation by class name (``great_expectations.expectations``) and its arguments."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")


_LINEAGE_NOT_NULL = ("source_id", "source_updated_at", "mapping_version", "load_id")
_NON_NEGATIVE = {
    "deals": ("amount",),
    "products": ("list_price", "standard_price"),
    "sales_orders": ("amount_untaxed", "amount_total"),
    "invoices": ("amount_untaxed", "amount_total", "amount_residual"),
}
_CURRENCY = {"sales_orders": ("currency",), "invoices": ("currency",)}


def _enum_values(table: str) -> dict[str, set[str]]:
    """Canonical column -> values its contracts may write (columns where unknown values are kept are left out)."""
    out: dict[str, set[str]] = {}
    open_columns: set[str] = set()
    for c in all_contracts():
        if c.target != table:
            continue
        for spec in c.fields.values():
            if spec.type != "enum":
                continue
            if spec.on_unknown == "keep":
                open_columns.add(spec.to)
            values = out.setdefault(spec.to, set())
            values.update(spec.values.values())
            if spec.default is not None:
                values.add(spec.default)
        for col, value in c.defaults.items():
            if col in out and value is not None:
                out[col].add(str(value))
    return {k: v for k, v in out.items() if k not in open_columns}


def suite_for(table: str) -> list[Expectation]:
    """The expectations of one canonical table."""
    if table not in CANONICAL_TABLES:
        raise ValueError(f"unknown canonical table {table!r}")
    systems = sorted({s for s, _ in entities_for_table(table)})
    exps = [Expectation("ExpectTableRowCountToBeBetween", {"min_value": 1})]
    exps += [Expectation("ExpectColumnValuesToNotBeNull", {"column": c}) for c in _LINEAGE_NOT_NULL]
    exps.append(
        Expectation("ExpectCompoundColumnsToBeUnique", {"column_list": ["source_system", "source_id"]})
    )
    if systems:
        exps.append(
            Expectation("ExpectColumnValuesToBeInSet", {"column": "source_system", "value_set": systems})
        )
    for col, values in sorted(_enum_values(table).items()):
        exps.append(Expectation("ExpectColumnValuesToBeInSet", {"column": col, "value_set": sorted(values)}))
    for col in _NON_NEGATIVE.get(table, ()):
        exps.append(Expectation("ExpectColumnValuesToBeBetween", {"column": col, "min_value": 0}))
    for col in _CURRENCY.get(table, ()):
        exps.append(Expectation("ExpectColumnValueLengthsToEqual", {"column": col, "value": 3}))
    if table == "sales_order_lines":
        exps.append(
            Expectation(
                "ExpectColumnValuesToBeBetween", {"column": "discount", "min_value": 0, "max_value": 100}
            )
        )
    if table == "invoices":
        exps.append(
            Expectation(
                "ExpectColumnPairValuesAToBeGreaterThanB",
                {
                    "column_A": "due_date",
                    "column_B": "invoice_date",
                    "or_equal": True,
                    "ignore_row_if": "either_value_is_missing",
                },
            )
        )
    return exps


def _datasource(ctx: Any, url: str) -> Any:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return ctx.data_sources.add_sqlite("warehouse", connection_string=url)
    if url.startswith("postgresql"):
        return ctx.data_sources.add_postgres("warehouse", connection_string=url)
    return ctx.data_sources.add_sql("warehouse", connection_string=url)


def _exception_message(info: Any) -> str | None:
    """GX reports a crashed expectation as {raised_exception, exception_message} or nested per metric."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))[:300]
    for v in info.values():
        found = _exception_message(v)
        if found:
            return found
    return None


def run_suite(url: str, table: str, policies: Policies) -> CheckOutcome:
    """Validate ``table`` in the warehouse at ``url`` with its suite; failing expectations in the metadata."""
    # lazy: only a suite run needs Great Expectations, saves 4800 ms for every other check
    import great_expectations as gx
    import great_expectations.expectations as gxe  # lazy: loaded with gx above
    from great_expectations.data_context.types.base import ProgressBarsConfig  # lazy: loaded with gx above

    expectations = suite_for(table)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        _datasource(ctx, url).add_table_asset(table, table_name=table).add_batch_definition_whole_table("all")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{table}_suite"))
    for e in expectations:
        suite.add_expectation(getattr(gxe, e.kind)(**e.kwargs))
    result = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}_validation", data=batch, suite=suite)
    ).run()
    pii = pii_columns(table)
    failed = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        if cfg is None:
            continue
        column = cfg.kwargs.get("column")
        res = r.result or {}
        item: dict[str, Any] = {"expectation": cfg.type, "column": column}
        if res.get("unexpected_count") is not None:
            item["unexpected_count"] = int(res["unexpected_count"])
            item["unexpected_percent"] = round(float(res.get("unexpected_percent") or 0.0), 3)
        if res.get("observed_value") is not None:
            item["observed_value"] = str(res["observed_value"])
        sample = res.get("partial_unexpected_list") or []
        if column in pii:
            item["sample"] = "<withheld: PII column>"
        elif sample:
            item["sample"] = [str(v) for v in sample[:SAMPLE]]
        error = _exception_message(r.exception_info)
        if error:
            item["error"] = error
        failed.append(item)
    meta = {
        "expectations": len(expectations),
        "failed": failed,
        "success_percent": round(float(result.statistics.get("success_percent") or 0.0), 2),
    }
    if failed:
        what = ", ".join(f"{f['expectation']}({f['column'] or ''})" for f in failed[:5])
        return CheckOutcome.fail(
            policies.check("gx_suite").severity,
            f"{len(failed)} of {len(expectations)} expectations failed on {table}: {what}.",
            **meta,
        )
    return CheckOutcome.ok(f"All {len(expectations)} expectations passed on {table}.", **meta)
