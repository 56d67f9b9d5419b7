"""RELIABILITY #30, concurrent-loaders: two ``integration-assets sync`` processes started at once on the
same inbox file (Postgres warehouse). One loads it; the other says it is already being loaded and exits 0
without a crash; the loads ledger has one success for the content hash and the rows are there once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from integration_assets.warehouse.db import get_engine
from tests.faults.accounting import Figures, account_rows, file_load_statuses
from tests.faults.files import contact_row, inbox_folder, sync_popen, write_contacts

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N = 5_000


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_concurrent_syncs(warehouse_url: str, isolated_env: Path, record: Callable[..., Figures]) -> None:
    ids = write_contacts(
        inbox_folder(isolated_env) / "contacts.csv", [contact_row(200_000 + i) for i in range(N)]
    )
    # The Dagster instance exists before the syncs start, as on any deployment: two processes creating a
    # fresh instance's SQLite storage at once race in Dagster's own migrations, which is not what this tests.
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
    procs = [sync_popen(), sync_popen()]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        results.append((p.returncode, out, err))
    for code, _out, err in results:
        assert code == 0, err[-3000:]
        assert "FileNotFoundError" not in err, err[-3000:]
    statuses = sorted(
        ld["status"] for _, out, _ in results for ld in json.loads(out.splitlines()[-1])["loads"]
    )
    engine = get_engine(warehouse_url)
    ledger = file_load_statuses(engine)
    assert ledger.count("succeeded") == 1, ledger
    assert not list((isolated_env / "inbox").rglob("*.csv"))
    fig = account_rows(
        engine,
        "two syncs on one file at once",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        backend="postgres",
    )
    fig.notes.append(f"the syncs reported {statuses}; ledger {ledger}")
    record(fig, applied=N, dead_lettered=0)
