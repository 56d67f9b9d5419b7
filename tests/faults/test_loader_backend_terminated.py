"""RELIABILITY #7, pg-connection-kill on the file path: the loader's own Postgres backend is terminated
(``pg_terminate_backend`` of its pid, from another session) in the middle of its merge. The load's
transaction is gone as a whole; the step's transient retry loads the file in the same ``sync``: every
row once, one successful load, the failed attempt recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.warehouse import writer
from integration_assets.warehouse.db import get_engine
from tests.conftest import PG_ADMIN_URL
from tests.faults.accounting import Figures, account_rows, file_load_statuses
from tests.faults.files import contact_row, inbox_folder, write_contacts

N = 3000


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_loader_backend_terminated(
    warehouse_url: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch, record: Callable[..., Figures]
) -> None:
    from integration_assets.cli.sync import run_pending

    path = inbox_folder(isolated_env) / "contacts.csv"
    ids = write_contacts(path, [contact_row(800_000 + i) for i in range(N)])
    merge = writer.CanonicalStage.merge
    killed: list[int] = []
    admin = sa.create_engine(PG_ADMIN_URL, poolclass=sa.pool.NullPool)

    def merge_in_a_terminated_backend(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not killed:
            pid = self.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            with admin.connect() as conn:  # our own loader's backend, nobody else's
                assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
            killed.append(pid)
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(writer.CanonicalStage, "merge", merge_in_a_terminated_backend)
    try:
        result = run_pending()
    finally:
        admin.dispose()
    engine = get_engine(warehouse_url)
    statuses = file_load_statuses(engine)
    assert killed, "the load never merged"
    fig = account_rows(
        engine,
        "loader's backend terminated mid-merge",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        backend="postgres",
    )
    fig.notes.append(f"one sync: ok={result.ok}; ledger {statuses}")
    record(fig, applied=N, dead_lettered=0)
    assert statuses.count("succeeded") == 1 and not path.exists(), statuses
