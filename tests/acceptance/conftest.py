"""The acceptance tests' world: the fake HubSpot over real HTTP, and DAGSTER_HOME's instance (the one the
CLI opens) with the code location's resources pointed at it; backfills run through the backfill daemon's own
iteration, their runs in this process."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sensors import partitions as p

# Runs submitted by the backfill are launched at once (no run queue daemon) and execute in this process,
# synchronously (no run worker).
SYNC_LAUNCHER = (
    "telemetry: {enabled: false}\n"
    "run_coordinator:\n"
    "  module: dagster._core.run_coordinator.default_run_coordinator\n"
    "  class: DefaultRunCoordinator\n"
    "run_launcher:\n"
    "  module: dagster._core.launcher.sync_in_memory_run_launcher\n"
    "  class: SyncInMemoryRunLauncher\n"
)


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def instance(
    hubspot: FakeHubSpot, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """DAGSTER_HOME's instance (the one the CLI opens), with the code location's resources pointed at the fake."""
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", hubspot.token)
    monkeypatch.setenv("HUBSPOT_BASE_URL", hubspot.url)
    # The workspace imports integration_assets.definitions; build it again with the fake's base URL.
    monkeypatch.delitem(sys.modules, "integration_assets.definitions", raising=False)
    home = Path(os.environ["DAGSTER_HOME"])
    (home / "dagster.yaml").write_text(SYNC_LAUNCHER, encoding="utf-8")
    with dg.DagsterInstance.from_config(str(home)) as i:
        yield i


def run_backfill(instance: dg.DagsterInstance, backfill_id: str) -> None:
    with p.workspace_for(instance) as process:
        for _ in range(10):
            p.run_backfills_once(process)
            if p.backfill_status(instance, backfill_id) != "REQUESTED":
                return
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    raise AssertionError(
        f"backfill {backfill_id} still {p.backfill_status(instance, backfill_id)}: "
        f"{[(r.run_id, r.status, r.tags) for r in runs]}"
    )


def launched_id(output: str) -> str:
    line = next(ln for ln in output.splitlines() if ln.startswith("Backfill "))
    return line.split()[1]
