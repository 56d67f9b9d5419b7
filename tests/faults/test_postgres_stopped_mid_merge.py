"""Postgres stopped mid-merge: a large contacts export is loaded by ``integration-assets sync`` (its own
process) into a PostgreSQL cluster of the test's own; while the merge statement runs, the cluster is
stopped with ``pg_ctl stop -m immediate`` (a crash: no checkpoint, recovery on the next start) and started
again. The load's transaction is gone as a whole; the step's transient-retry (backoff) loads the file
again once the cluster is back, in the same sync, with no person acting: exactly once, nothing partial."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.warehouse.schema import loads
from tests.faults.accounting import Figures, account_rows
from tests.faults.files import contact_row, inbox_folder, sync_popen, write_contacts
from tests.support.servers import OwnPostgres

pytestmark = pytest.mark.slow

N = 30_000
MERGE_SQL = ('INSERT INTO "contacts"%', "INSERT INTO contacts%", "%WITH src AS MATERIALIZED%")


def _merging(admin: sa.Engine, database: str) -> bool:
    with admin.connect() as conn:
        return bool(
            conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND state = 'active' "
                    "AND (query ILIKE :a OR query ILIKE :b OR query ILIKE :c)"
                ),
                {"d": database, "a": MERGE_SQL[0], "b": MERGE_SQL[1], "c": MERGE_SQL[2]},
            )
        )


def test_postgres_stopped_mid_merge(
    own_postgres: OwnPostgres,
    own_pg_url: str,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Callable[..., Figures],
) -> None:
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", own_pg_url)
    ids = write_contacts(
        inbox_folder(isolated_env) / "contacts_big.csv", [contact_row(1_000_000 + i) for i in range(N)]
    )
    database = own_pg_url.rsplit("/", 1)[1]
    admin = sa.create_engine(own_postgres.admin_url, poolclass=sa.pool.NullPool)
    proc = sync_popen()
    stopped_during_merge = False
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and time.monotonic() < deadline:
            if _merging(admin, database):
                own_postgres.stop("immediate")
                stopped_during_merge = True
                time.sleep(1.0)  # the outage lasts a second (the scenario)
                own_postgres.start()  # crash recovery; the sync's retry finds it back
                break
            time.sleep(0.02)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert stopped_during_merge, f"the sync ended (exit {proc.returncode}) before its merge was seen"
    first = (
        proc.returncode,
        [ld["status"] for ld in json.loads(out.splitlines()[-1])["loads"]] if out.strip() else err[-500:],
    )
    assert not (inbox_folder(isolated_env) / "contacts_big.csv").exists(), (
        f"not loaded by the sync's own retry: {first}"
    )
    engine = sa.create_engine(own_pg_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        statuses = [r[0] for r in conn.execute(sa.select(loads.c.status).where(loads.c.kind == "file"))]
    assert statuses.count("succeeded") == 1, statuses
    assert not list((isolated_env / "inbox").rglob("*.csv"))
    fig = account_rows(
        engine,
        "Postgres stopped (-m immediate) mid-merge",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        backend="own postgres cluster",
    )
    fig.notes.append(f"ledger after recovery: {sorted(statuses)}; the sync: {first}")
    engine.dispose()
    admin.dispose()
    record(fig, applied=N, dead_lettered=0)
