"""``integration-assets status``: per source entity, from the warehouse and the Dagster instance in DAGSTER_HOME."""

from __future__ import annotations

import json

import dagster as dg
from click.testing import CliRunner

from integration_assets.alerts.incidents import Alert
from integration_assets.alerts.notifier import Notifier
from integration_assets.cli import main
from integration_assets.ingest.load import ingest_file
from tests.checks.support import FIXTURE, check_key, run_checks


def _status(*args: str) -> str:
    result = CliRunner().invoke(main, ["status", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_status_per_source_entity(warehouse_url: str) -> None:
    from integration_assets.definitions import defs

    ingest_file(FIXTURE, "hubspot", "contacts")  # 6 rows read, 2 quarantined
    with Notifier.from_env() as notifier:
        notifier.fire(
            Alert(
                key="dead_letters:hubspot/contacts",
                severity="warning",
                title="2 records quarantined",
                summary="s",
                source_system="hubspot",
                entity="contacts",
            )
        )
        notifier.fire(
            Alert(
                key="http:stripe",
                severity="error",
                title="Stripe API keeps failing",
                summary="s",
                source_system="stripe",
            )
        )
    with dg.DagsterInstance.get() as instance:  # the instance of DAGSTER_HOME, as the CLI sees it
        run_checks(defs, instance, [check_key("contacts", "drift"), check_key("contacts", "keys")])

    data = json.loads(_status("--json"))
    assert data["dagster_instance"] is True
    by_source = {e["source"]: e for e in data["entities"]}
    contacts = by_source["hubspot/contacts"]
    assert contacts["last_successful_load"] is not None and contacts["latest_load_status"] == "succeeded"
    assert (
        contacts["rows_last_day"],
        contacts["quarantined_last_day"],
        contacts["dead_letters_pending"],
    ) == (6, 2, 2)
    assert contacts["freshness"] == "PASS" and contacts["freshness_source"] == "ledger"  # no daemon ran
    assert contacts["failing_checks"] == ["drift (WARN)"]
    assert [a["key"] for a in contacts["open_alerts"]] == ["dead_letters:hubspot/contacts"]
    assert [a["key"] for a in data["other_open_alerts"]] == ["http:stripe"]
    odoo = by_source["odoo/sale.order"]
    assert (
        odoo["last_successful_load"] is None and odoo["freshness"] == "UNKNOWN" and odoo["rows_last_day"] == 0
    )
    assert "password" not in data["warehouse"]

    screen = _status()
    assert "hubspot/contacts" in screen and "drift (WARN)" in screen and "Stripe API keeps failing" in screen
