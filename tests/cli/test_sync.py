"""``integration-assets sync``: the in-process path over the inbox, its JSON summary and exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import loads

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def _drop(name: str) -> None:
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, folder / name)


def _sync() -> dict:
    res = CliRunner().invoke(main, ["sync", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_sync_loads_then_archives_a_resent_copy_without_a_run(warehouse_url: str) -> None:
    _drop("contacts.csv")
    first = _sync()
    assert first["ok"] and len(first["runs"]) == 1
    [load] = first["loads"]
    assert (load["status"], load["rows_read"], load["rows_quarantined"]) == ("succeeded", 6, 2)
    assert first["totals"]["rows_inserted"] == 3

    _drop("contacts-resent.csv")  # the same bytes under another name
    second = _sync()
    assert second["runs"] == []  # recognised by its content hash: no Dagster run, nothing read
    [dup] = second["loads"]
    assert dup["status"] == "duplicate_file" and dup["rows_read"] == 0 and load["load_id"] in dup["error"]
    settings = get_settings()
    assert not any(settings.inbox_dir.rglob("*.csv"))
    assert len(list(settings.archive_dir.rglob("*.csv"))) == 2
    with get_engine(warehouse_url).connect() as conn:
        statuses = sorted(r[0] for r in conn.execute(sa.select(loads.c.status)))
    assert statuses == ["duplicate_file", "succeeded"]


def test_sync_with_an_empty_inbox_runs_nothing(warehouse_url: str) -> None:
    out = _sync()
    inbox = str(get_settings().inbox_dir)
    assert out == {"ok": True, "inbox": inbox, "runs": [], "entities": [], "totals": {}, "loads": []}


def test_a_sync_hashes_the_file_once_and_its_snapshot_once(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from integration_assets.connectors.files import hashing

    passes: list[str] = []

    class Counting:
        def __getattr__(self, name: str) -> object:
            return getattr(hashlib, name)

        @staticmethod
        def sha256(*args: object) -> object:
            passes.append("sha256")
            return hashlib.sha256(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hashing, "hashlib", Counting())
    _drop("contacts.csv")
    out = _sync()
    assert [ld["status"] for ld in out["loads"]] == ["succeeded"]
    # The decision (already loaded?), the run's file list, the load and the changed-during-load check share
    # one pass over the inbox file; copying the snapshot is the other.
    assert len(passes) == 2
