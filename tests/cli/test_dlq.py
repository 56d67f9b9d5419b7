"""``integration-assets dlq list|show|replay``: review a quarantined row, teach the contract, replay it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.contracts.spec import CONTRACTS_DIR
from integration_assets.ingest.load import ingest_file

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


@pytest.fixture
def contracts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))
    return root


def _teach_prospect(root: Path) -> None:
    path = root / "hubspot" / "contacts_export.v1.yaml"
    text = path.read_text()
    assert "      Other: other\n" in text
    path.write_text(
        text.replace("      Other: other\n", "      Other: other\n      Prospect: opportunity\n", 1)
    )


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
    _teach_prospect(contracts_dir)
    res = runner.invoke(main, ["dlq", "replay", str(target), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["replayed"] == 1 and out["run_id"]
    assert runner.invoke(main, ["dlq", "replay"]).exit_code != 0  # neither ids nor --filter
