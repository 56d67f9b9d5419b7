"""The warehouse becomes unreachable in the middle of a load's merge, for 2 s (a TCP proxy of the test cuts
the connections and refuses new ones): the transaction is gone as a whole and the load cannot even record
its failure. The step's own transient retry (first after ~5 s) must then load the file in the same
``sync``, exactly once, with nothing partial and no person running ``sync`` again. (A connection cut
alone, with the warehouse still reachable, is retried fine: the failed attempt is recorded.)"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from integration_assets.warehouse import writer
from integration_assets.warehouse.db import get_engine
from tests.faults.accounting import Figures, account_rows, file_load_statuses
from tests.faults.files import contact_row, inbox_folder, write_contacts
from tests.support.tcp_proxy import TcpProxy

N = 2000


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_load_retry_after_connection_loss(
    warehouse_url: str,
    pg_proxy: TcpProxy,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Callable[..., Figures],
) -> None:
    from integration_assets.cli.sync import run_pending

    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", pg_proxy.url_for(warehouse_url))
    path = inbox_folder(isolated_env) / "contacts.csv"
    ids = write_contacts(path, [contact_row(700_000 + i) for i in range(N)])
    merge = writer.CanonicalStage.merge
    cuts: list[int] = []

    def merge_then_lose_the_connection(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not cuts:
            cuts.append(1)
            pg_proxy.down()  # connections cut, new ones refused: this merge fails, its transaction is gone
            threading.Timer(2.0, lambda: setattr(pg_proxy, "up", True)).start()
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(writer.CanonicalStage, "merge", merge_then_lose_the_connection)
    result = run_pending()
    engine = get_engine(warehouse_url)
    statuses = file_load_statuses(engine)
    fig = account_rows(
        engine,
        "warehouse away for 2 s mid-merge: the step retry",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        backend="postgres",
    )
    fig.notes.append(f"one sync: ok={result.ok}; ledger {statuses}; file left in the inbox: {path.exists()}")
    assert cuts, "the load never merged"
    record(fig, applied=N, dead_lettered=0)  # a file still waiting in the inbox would count as lost
    assert not path.exists(), f"the file is still in the inbox after the sync; ledger {statuses}"
    assert statuses.count("succeeded") == 1
