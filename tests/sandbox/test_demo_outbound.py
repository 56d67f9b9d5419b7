"""The demo's outbound chain (``make demo``): a handful of won deals become Odoo orders with stock reserved,
EasyPost labels and tracking numbers written back; one chain is held by a field the demo's Odoo starts
requiring, and the fix the summary prints (the contract line, then the replay) completes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.sandbox.demo_outbound import (
    DEMO_COMPANY_BASE,
    DEMO_DEAL_BASE,
    REQUIRED_FIELD,
    REQUIRED_VALUE,
    DemoWorld,
    next_ids,
    run_chains,
    start_world,
)
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import dead_letters, outbound_chains

DEALS = 4


@pytest.fixture
def world(warehouse_url: str) -> Iterator[DemoWorld]:
    w = start_world(7, DEALS + 1)
    try:
        yield w
    finally:
        w.stop()


def test_won_deals_reach_odoo_easypost_and_hubspot_and_one_is_held(
    world: DemoWorld, engine: sa.Engine
) -> None:
    assert next_ids(engine) == (DEMO_DEAL_BASE, DEMO_COMPANY_BASE)
    summary = run_chains(world, get_settings(), deals=DEALS)

    done, [held] = summary["chains"][:DEALS], summary["chains"][DEALS:]
    for row in done:
        assert row["status"] == "written_back", row
        assert row["order"] and row["reserved"]
        assert (
            row["tracking_code"]
            and row["tracking_code"] == row["picking_tracking"] == row["hubspot_tracking"]
        )
    orders = world.odoo.orders()
    assert sorted(o["client_order_ref"] for o in orders) == sorted(
        f"hubspot-deal:{d.deal_id}" for d in world.deals[:DEALS]
    )
    assert all(o["state"] == "sale" for o in orders)
    assert world.easypost.labels_bought() == DEALS and not world.easypost.duplicates()

    assert held["status"] == "dead_lettered" and held["order"] is None
    [letter] = summary["held"]
    assert letter["deal_id"] == world.deals[DEALS].deal_id and letter["check"] == "target_rejected"
    assert REQUIRED_FIELD in letter["reason"]
    fix = summary["fix"]
    assert fix["field"] == REQUIRED_FIELD and fix["contract"].endswith("outbound/odoo/sale_order.v1.yaml")
    assert Path(fix["contract"]).exists()
    assert fix["replay"] == f"integration-assets dlq replay {letter['id']}"
    # Running the demo again on this warehouse wins new deals: its ids start past these.
    assert next_ids(engine) == (DEMO_DEAL_BASE + DEALS + 1, DEMO_COMPANY_BASE + 2)


def test_the_printed_fix_completes_the_held_chain(
    world: DemoWorld, contracts_dir: Path, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = run_chains(world, get_settings(), deals=DEALS)
    fix = summary["fix"]
    held_deal = world.deals[DEALS].deal_id
    contract = Path(fix["contract"]).resolve()
    assert contract == (contracts_dir / "outbound" / "odoo" / "sale_order.v1.yaml").resolve()

    # The contract edit, as printed: the lines go under `fields:`.
    text = contract.read_text()
    assert "\nfields:\n" in text
    contract.write_text(
        text.replace("\nfields:\n", "\nfields:\n" + "\n".join(fix["contract_lines"]) + "\n", 1)
    )
    # The targets the commands write to (the demo's fakes are still running here).
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

    runner = CliRunner()
    for command in (fix["replay"], fix["resume"]):
        args = command.split()[1:]
        res = runner.invoke(main, [*args, "--json"])
        assert res.exit_code == 0, (command, res.output)
    assert json.loads(runner.invoke(main, ["outbound", "trace", held_deal, "--json"]).stdout)

    [order] = world.odoo.orders(client_order_ref=f"hubspot-deal:{held_deal}")
    assert order[REQUIRED_FIELD] == REQUIRED_VALUE
    assert len(world.odoo.orders()) == DEALS + 1 and world.easypost.labels_bought() == DEALS + 1
    assert not world.easypost.duplicates()
    with engine.connect() as conn:
        status = conn.scalar(
            sa.select(outbound_chains.c.status).where(outbound_chains.c.chain_id == held_deal)
        )
        letter = conn.execute(
            sa.select(dead_letters.c.status).where(dead_letters.c.id == summary["held"][0]["id"])
        ).scalar_one()
    assert status == "written_back" and letter == "replayed"
    tracking = world.hubspot.objects["deals"][held_deal]["properties"]["tracking_number"]
    assert (
        tracking
        and tracking
        == world.easypost.shipments_with_reference(f"hubspot-deal:{held_deal}")[0]["tracking_code"]
    )
