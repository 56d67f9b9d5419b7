"""Fixtures for the API connectors: the local fakes (real HTTP servers on 127.0.0.1), a migrated SQLite
warehouse for the HTTP status counts, and retry policies short enough for tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from integration_assets.connectors._retry import HttpRetry

if TYPE_CHECKING:
    from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
    from integration_assets.sandbox.fakes.odoo import FakeOdoo

# Backoffs in milliseconds; Retry-After and provider windows are still honoured as sent.
FAST = HttpRetry(max_attempts=6, backoff_base=0.02, backoff_cap=0.2, max_wait=30.0)


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    from integration_assets.sandbox.fakes.hubspot import FakeHubSpot

    fake = FakeHubSpot()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def odoo() -> Iterator[FakeOdoo]:
    from integration_assets.sandbox.fakes.odoo import FakeOdoo

    fake = FakeOdoo()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def sqlite_warehouse(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite warehouse (for the connector_http_stats counts), set as INTEGRATION_WAREHOUSE_URL."""
    from integration_assets.warehouse import db

    url = f"sqlite:///{isolated_env / 'warehouse.db'}"
    db.upgrade(url)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    return url


def inbox_files(inbox: Path, system: str, entity: str) -> list[Path]:
    folder = inbox / system / entity
    return sorted(folder.iterdir()) if folder.exists() else []


def landed_records(inbox: Path, system: str, entity: str) -> list[dict]:
    """Every record in the entity's inbox folder; fails on a .part file or a line that is not whole JSON."""
    out = []
    for f in inbox_files(inbox, system, entity):
        assert not f.name.endswith(".part"), f"half-written file left behind: {f.name}"
        for line in f.read_text(encoding="utf-8").splitlines():
            out.append(json.loads(line))
    return out
