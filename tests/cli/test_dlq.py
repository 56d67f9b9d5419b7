"""``integration-assets dlq list|show|replay``: review a quarantined row, teach the contract, replay it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.ingest.load import ingest_file
from tests.support.contracts import teach_prospect

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def test_cli_list_show_replay(warehouse_url: str, contracts_dir: Path) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    runner = CliRunner()
    res = runner.invoke(main, ["dlq", "list", "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    assert {i["natural_key"] for i in items} == {"103", "104"} and all("raw_record" not in i for i in items)
    target = next(i["id"] for i in items if i["natural_key"] == "104")
    res = runner.invoke(main, ["dlq", "show", str(target)])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["raw_record"]["Lifecycle Stage"] == "Prospect"
    teach_prospect(contracts_dir)
    res = runner.invoke(main, ["dlq", "replay", str(target), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["replayed"] == 1 and out["run_id"]
    assert runner.invoke(main, ["dlq", "replay"]).exit_code != 0  # neither ids nor --filter
