"""What the Dagster UI shows as a check's description: the runbook with the table's source filled in, and no
text lost to the Markdown renderer (issue: ``dlq list --source --entity`` with the placeholders eaten)."""

from __future__ import annotations

from integration_assets.checks.canonical import check_specs
from integration_assets.policies import load_policies
from tests.alerts.test_runbook import visible


def _descriptions(*tables: str) -> dict[tuple[str, str], str]:
    return {(s.table, s.name): s.description for s in check_specs(tables, load_policies())}


def test_runbooks_name_the_tables_source_and_render_as_written() -> None:
    d = _descriptions("contacts", "sales_orders", "deals")
    shown = visible(d[("contacts", "quarantine_rate")])
    assert "integration-assets dlq list --source hubspot --entity contacts" in shown
    assert "dlq replay --filter --source hubspot --entity contacts" in shown
    assert "--source odoo --entity sale.order" in visible(d[("sales_orders", "dead_letter_backlog")])
    # The file is not known to the check: the placeholder stays readable.
    assert "integration-assets contracts check {file}" in visible(d[("deals", "drift")])
    for (table, name), text in d.items():
        assert "<" not in visible(text).replace("< ", ""), (table, name)
        assert "{system}" not in text and "{entity}" not in text, (table, name)


def test_commands_are_code_formatted() -> None:
    d = _descriptions("contacts")
    assert (
        "`integration-assets dlq list --source hubspot --entity contacts`"
        in d[("contacts", "quarantine_rate")]
    )


def test_reconciliation_runbooks_give_a_query_the_sql_command_runs() -> None:
    d = _descriptions("sales_orders", "deals")
    assert (
        'integration-assets sql "SELECT * FROM reconciliation_mismatches WHERE check_name = '
        "'reconcile_deals_orders'\""
    ) in visible(d[("sales_orders", "reconcile_deals_orders")])
