"""The installed ``integration-assets`` console script: exit codes and output survive the fast exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from integration_assets.settings import get_settings

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from integration_assets.cli import entry; sys.argv[0] = 'integration-assets'; entry()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )


def test_exit_codes_of_the_console_script() -> None:
    ok = _script("--help")
    assert ok.returncode == 0 and "Usage: integration-assets" in ok.stdout
    usage = _script("no-such-command")
    assert usage.returncode == 2 and "No such command" in usage.stderr


def test_sync_output_is_complete_when_piped(warehouse_url: str) -> None:
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, folder / "contacts.csv")
    res = _script("sync", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # the whole JSON document, flushed before the process left
    assert out["ok"] and out["totals"]["rows_read"] == 6
