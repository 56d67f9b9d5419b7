"""``integration-assets db``: the stamped revision before and after migrating."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.warehouse.db import HEAD_REVISIONS


def test_db_current_and_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    runner = CliRunner()
    before = runner.invoke(main, ["db", "current"])
    assert before.exit_code == 0 and before.output.strip() == "base"
    up = runner.invoke(main, ["db", "upgrade"])
    assert up.exit_code == 0, up.output
    after = runner.invoke(main, ["db", "current"])
    assert after.output.strip() == ", ".join(sorted(HEAD_REVISIONS))
