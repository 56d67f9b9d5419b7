"""``integration-assets pull hubspot|odoo`` against the fakes: output, exit codes, secrets only from env."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.sandbox.fakes._server import Fault
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.settings import get_settings
from tests.connectors.conftest import landed_records


def test_pull_hubspot_one_entity_then_incrementally(
    hubspot: FakeHubSpot, monkeypatch: pytest.MonkeyPatch
) -> None:
    hubspot.seed(companies=3, contacts=12, deals=2)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot.token)
    monkeypatch.setenv("HUBSPOT_BASE_URL", hubspot.url)
    runner = CliRunner()
    res = runner.invoke(main, ["pull", "hubspot", "--entity", "contacts", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["ok"] and [(p["entity"], p["mode"], p["records"]) for p in out["pulls"]] == [
        ("contacts", "full", 12)
    ]
    assert hubspot.token not in res.output
    hubspot.touch("contacts", ["1005"], firstname="New")
    res = runner.invoke(main, ["pull", "hubspot", "--entity", "contacts"])
    assert res.exit_code == 0 and "hubspot/contacts: incremental pull, 1 record(s) in 1 file(s)" in res.output
    assert len(landed_records(get_settings().inbox_dir, "hubspot", "contacts")) == 13


def test_missing_credentials_are_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    res = CliRunner().invoke(main, ["pull", "odoo"])
    assert res.exit_code == 2 and "ODOO_URL" in res.output and "ODOO_API_KEY" in res.output


def _odoo_env(monkeypatch: pytest.MonkeyPatch, odoo: FakeOdoo, key: str) -> None:
    for name, value in (
        ("ODOO_URL", odoo.url),
        ("ODOO_DB", odoo.db),
        ("ODOO_USERNAME", odoo.login),
        ("ODOO_API_KEY", key),
    ):
        monkeypatch.setenv(name, value)


def test_pull_odoo_exit_codes_say_terminal_or_transient(
    odoo: FakeOdoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    odoo.seed()
    _odoo_env(monkeypatch, odoo, "not-the-key-42")
    res = CliRunner().invoke(main, ["pull", "odoo", "--entity", "sale.order"])
    assert res.exit_code == 1 and "terminal" in res.output and "login failed" in res.output
    assert "not-the-key-42" not in res.output

    _odoo_env(monkeypatch, odoo, odoo.api_key)
    odoo.fault = lambda req: Fault(503, retry_after=3600)  # "come back in an hour": not slept on
    res = CliRunner().invoke(
        main, ["pull", "odoo", "--entity", "sale.order", "--since", "2025-01-01T00:00:00Z"]
    )
    assert res.exit_code == 75 and "transient" in res.output

    odoo.fault = None
    res = CliRunner().invoke(
        main, ["pull", "odoo", "--entity", "sale.order", "--entity", "sale.order.line", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert [p["records"] for p in json.loads(res.output)["pulls"]] == [8, 24]
