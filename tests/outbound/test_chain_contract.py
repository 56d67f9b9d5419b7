"""Acceptance: Odoo starts requiring a new field on sale orders. The write is refused with Odoo's own
validation error (a JSON-RPC error inside an HTTP 200), the chain is dead-lettered (stage outbound) with the
field named; a contract edit (odoo/sale_order v2 fills the field) and ``dlq replay`` complete it, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.outbound import queries
from tests.outbound.chain_world import ChainWorld, chain_world

FIELD = "x_studio_sales_channel"


def teach_sales_channel(contracts: Path) -> Path:
    """The contract edit: v2 of odoo/sale_order sends the field Odoo now requires."""
    v1 = contracts / "outbound" / "odoo" / "sale_order.v1.yaml"
    text = v1.read_text().replace("version: 1\n", "version: 2\n", 1)
    assert "fields:\n" in text and "required: [" in text
    text = text.replace("fields:\n", f"fields:\n  {FIELD}: {{value: hubspot}}\n", 1)
    text = text.replace("required: [", f"required: [{FIELD}, ", 1)
    v2 = v1.with_name("sale_order.v2.yaml")
    v2.write_text(text)
    return v2


def point_settings_at(world: ChainWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dlq replay`` builds its clients from settings, as in production: point them at the fakes."""
    for name, value in {
        "ODOO_URL": world.odoo.url,
        "ODOO_DB": world.odoo.db,
        "ODOO_USERNAME": world.odoo.login,
        "ODOO_API_KEY": world.odoo.api_key,
        "EASYPOST_BASE_URL": world.easypost.url,
        "EASYPOST_API_KEY": world.easypost.api_key,
        "HUBSPOT_BASE_URL": world.hubspot.url,
        "HUBSPOT_ACCESS_TOKEN": world.hubspot.token,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_new_required_field_dead_letters_then_contract_edit_and_replay_complete(
    warehouse_url: str,
    engine: sa.Engine,
    contracts_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        world.odoo.require_field("sale.order", FIELD, "Sales Channel")
        deals = [world.add_deal(i).deal_id for i in range(2)]
        world.pull_and_ingest()
        reports = world.drain()
        assert reports["odoo_order"].dead_lettered == 2 and reports["odoo_order"].retried == 0

        # Held: nothing in Odoo, the dead letter names the field and carries Odoo's message.
        assert world.odoo.orders() == []
        letters = world.dead_letters()
        assert {dl["natural_key"] for dl in letters} == set(deals)
        for dl in letters:
            assert (dl["source_system"], dl["entity"], dl["status"]) == ("odoo", "odoo_order", "pending")
            assert dl["column_name"] == FIELD
            assert FIELD in dl["reason"] and "mandatory field" in dl["reason"]
            assert dl["contract_version"] == "odoo/sale_order@v1"
        assert {c["status"] for c in world.chains().values()} == {"dead_lettered"}

        # The fix: a contract edit, then the replay command.
        teach_sales_channel(contracts_dir)
        point_settings_at(world, monkeypatch)
        res = CliRunner().invoke(main, ["dlq", "replay", "--filter", "--stage", "outbound", "--json"])
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        assert summary["replayed"] == 2, summary
        world.drain()

        assert world.odoo_orders() == {f"hubspot-deal:{d}": 1 for d in deals}
        for d in deals:
            assert world.odoo_order(d)[FIELD] == "hubspot"
            assert world.easypost.labels_bought(f"hubspot-deal:{d}") == 1
        assert world.easypost.duplicates() == {}
        assert {c["status"] for c in world.chains().values()} == {"written_back"}
        assert {dl["status"] for dl in world.dead_letters()} == {"replayed"}
        assert {v["contract_version"] for k, v in world.ledger().items() if k.startswith("odoo_order:")} == {
            "odoo/sale_order@v2"
        }
        trace = queries.trace(engine, deals[0])
        assert trace.as_dict()["chain"]["status"] == "written_back"
