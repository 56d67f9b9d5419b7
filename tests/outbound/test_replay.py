"""``integration-assets dlq replay`` completes an outbound write held in the dead-letter queue once its cause
is fixed (through the replay_dead_letters job, as an operator runs it)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.outbound import relay, runner
from integration_assets.outbound.errors import StepRejected
from integration_assets.warehouse.schema import dead_letters, outbound_chains, outbound_ledger
from tests.outbound.conftest import EchoStep, merge_deals


# The CLI runs the Dagster job in process (seconds): on SQLite only; replay_outbound itself is tested on both
# databases and both queues in test_runner.py.
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_dlq_replay_completes_a_dead_lettered_write(engine: sa.Engine, echo: EchoStep) -> None:
    merge_deals(engine, [{"id": "31"}, {"id": "32"}])
    echo.fail["31"] = [StepRejected("Odoo requires x_incoterm on sale.order", field="x_incoterm")]
    echo.fail["32"] = [StepRejected("Odoo requires x_incoterm on sale.order", field="x_incoterm")] * 2
    relay.relay(engine, queue_url="sql")
    report = runner.run_step(engine, "odoo_order", queue_url="sql")
    assert report.dead_lettered == 2 and echo.created == {}

    cli = CliRunner()
    res = cli.invoke(main, ["dlq", "list", "--stage", "outbound", "--json"])
    assert res.exit_code == 0, res.output
    listed = {i["natural_key"]: i for i in json.loads(res.stdout)}
    assert set(listed) == {"31", "32"}
    res = cli.invoke(main, ["dlq", "replay", "--filter", "--stage", "outbound", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # 31 is fixed; 32's cause is still there (it fails once more) and stays pending with the new reason.
    assert (out["replayed"], out["still_failing"]) == (1, 1)
    assert echo.created == {"31": 1}
    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(dead_letters.c.natural_key, dead_letters.c.status)).all())
        ledger_rows = dict(
            conn.execute(sa.select(outbound_ledger.c.chain_id, outbound_ledger.c.status)).all()
        )
        chains = dict(conn.execute(sa.select(outbound_chains.c.chain_id, outbound_chains.c.status)).all())
    assert status == {"31": "replayed", "32": "pending"}
    assert ledger_rows == {"31": "done", "32": "dead_lettered"}
    assert chains == {"31": "ordered", "32": "dead_lettered"}

    res = cli.invoke(main, ["dlq", "replay", str(listed["32"]["id"]), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["replayed"] == 1
    assert echo.created == {"31": 1, "32": 1}
