"""What ``integration-assets sync`` tells a person: where the inbox is when there is nothing to load, and files
that just landed (younger than the settle time) waited for, or listed as not settled yet, never silently
skipped."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.settings import get_settings

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def _drop(name: str) -> Path:
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FIXTURE, folder / name))


def test_an_empty_inbox_is_named(warehouse_url: str) -> None:
    res = CliRunner().invoke(main, ["sync"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert f"Nothing to load: no new files in the inbox {get_settings().inbox_dir}" in text
    assert "<inbox>/<system>/<entity>/" in text


def test_a_file_that_just_landed_is_waited_for_and_loaded(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_INBOX_SETTLE_SECONDS", "1")
    _drop("contacts.csv")
    res = CliRunner().invoke(main, ["sync", "--json"])
    assert res.exit_code == 0, res.output
    assert "file(s) that just landed to settle" in res.stderr
    out = json.loads(res.stdout)
    assert [ld["status"] for ld in out["loads"]] == ["succeeded"]
    assert "not_settled" not in out


def test_a_file_still_being_written_is_listed_not_skipped_silently(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_INBOX_SETTLE_SECONDS", "1")
    path = _drop("contacts.csv")
    future = time.time() + 3600  # keeps changing as far as the inbox can tell: never settles during the sync
    os.utime(path, (future, future))
    res = CliRunner().invoke(main, ["sync", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["loads"] == [] and [e["file"] for e in out["not_settled"]] == ["hubspot/contacts/contacts.csv"]
    human = CliRunner().invoke(main, ["sync"])
    assert "not settled yet hubspot/contacts/contacts.csv" in " ".join(human.stdout.split())
