"""``integration-assets outbound status|run|trace``: on chains seeded as runs leave them (status, trace), and
against the fake Odoo, EasyPost and HubSpot (run: a dry run shows each payload after its contract and sends
nothing; a run sends; the trace then shows the whole chain)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from integration_assets.cli import main
from integration_assets.cli.outbound import STEP_NAMES
from integration_assets.outbound.relay import relay
from integration_assets.outbound.runner import STEP_ORDER
from integration_assets.quality.outcome import utcnow
from integration_assets.sandbox.fakes._server import LoggedRequest
from tests.jobs.test_outbound import point_settings_at
from tests.outbound.chain_world import chain_world
from tests.support import outbound as seed

ODOO_WRITES = {"create", "write", "action_confirm", "action_assign", "action_cancel", "unlink"}


def odoo_writes(requests: list[LoggedRequest]) -> list[str]:
    """``model.method`` of every Odoo execute_kw that changes something."""
    out = []
    for r in requests:
        args = ((r.body or {}).get("params") or {}).get("args") or []
        if len(args) >= 5 and args[4] in ODOO_WRITES:
            out.append(f"{args[3]}.{args[4]}")
    return out


def outbound(*args: str) -> Result:
    return CliRunner().invoke(main, ["outbound", *args], catch_exceptions=False)


def test_the_step_choices_are_the_runners() -> None:
    assert STEP_NAMES == STEP_ORDER


def test_status_shows_backlog_stuck_chains_and_reconciliation(engine: sa.Engine) -> None:
    now = utcnow()
    seed.chain(engine, "41", won_at=now - timedelta(days=1))
    seed.chain(engine, "42", won_at=now - timedelta(hours=3), upto=None)  # stuck without an order
    seed.outbox_rows(engine, ("deal.won:43", "odoo_order", "43"))
    res = outbound("status")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Outbound backlog per step" in out and "odoo_order" in out and "compensate" in out
    assert "Stuck chains (1)" in out and "42" in out
    assert "reconciliation FAILS" in out and "deal_without_order" in out

    data = json.loads(outbound("status", "--json").output)
    assert {b["step"]: b["pending"] for b in data["backlog"]}["odoo_order"] == 1
    assert [(s["deal_id"], s["reason"]) for s in data["stuck"]] == [("42", "no_order")]
    assert data["reconciliation"]["mismatches_by_kind"] == {"deal_without_order": 1}


@pytest.mark.usefixtures("warehouse_url")
def test_status_of_an_empty_warehouse() -> None:
    res = outbound("status")
    assert res.exit_code == 0, res.output
    assert "stuck chains: none" in res.output and "reconciliation passes" in res.output


def test_trace_shows_a_held_chain_and_its_dead_letter(engine: sa.Engine) -> None:
    seed.chain(engine, "51", won_at=utcnow() - timedelta(hours=5), upto="order", status="dead_lettered")
    seed.outbound_dead_letter(engine, "51", "easypost_label")
    res = outbound("trace", "51")
    assert res.exit_code == 0, res.output
    assert "deal 51" in res.output and "status dead_lettered" in res.output
    assert "odoo_order" in res.output and "order (Odoo) 1051" in res.output
    assert "shipment (EasyPost): none" in res.output
    assert "target_rejected" in res.output and "dlq show" in res.output
    data = json.loads(outbound("trace", "51", "--json").output)
    assert data["chain"]["status"] == "dead_lettered" and data["dead_letters"][0]["column_name"] == "street1"


@pytest.mark.usefixtures("warehouse_url")
def test_trace_of_an_unknown_deal_exits_1() -> None:
    res = CliRunner().invoke(main, ["outbound", "trace", "404"])
    assert res.exit_code == 1 and "not in the warehouse" in res.output


def test_dry_run_sends_nothing_then_run_sends_and_trace_shows_the_chain(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chain_world(engine, tmp_path, monkeypatch) as world:
        point_settings_at(world, monkeypatch)
        deal = world.add_deal(1).deal_id
        world.pull_and_ingest()
        # The won deal is still an outbox row: previewed without relaying it.
        dry = outbound("run", "--step", "odoo_order", "--dry-run", "--json")
        assert dry.exit_code == 0, dry.output
        data = json.loads(dry.output)
        [preview] = data["previews"]
        assert preview["chain_id"] == deal and preview["contract_version"]
        assert preview["payloads"], preview  # the payloads after the contract
        assert data["outbox_unsent"] == 1  # nothing relayed
        relay(engine)  # now on the step's queue: previewed from there, and given back
        text = outbound("run", "--dry-run").output
        assert "would be" in text and "1 message(s) previewed, nothing sent" in text
        assert sum(world.odoo_orders().values()) == 0
        assert odoo_writes(world.odoo.requests) == [] and world.easypost.shipments_created == 0
        assert world.deal_patches() == {}

        res = outbound("run")
        assert res.exit_code == 0, res.output
        assert world.odoo_orders() == {f"hubspot-deal:{deal}": 1}
        assert world.easypost.labels_bought(f"hubspot-deal:{deal}") == 1
        trace = outbound("trace", deal)
    assert trace.exit_code == 0, trace.output
    for step in ("odoo_order", "easypost_label", "odoo_tracking", "hubspot_writeback"):
        assert step in trace.output
    assert "status written_back" in trace.output and "shipment (EasyPost) shp_" in trace.output
