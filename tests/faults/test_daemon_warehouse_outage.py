"""RELIABILITY #29, transient-file-failure-under-daemon: the inbox sensor launches a run for a new file,
the warehouse (Postgres, behind a TCP proxy of the test) becomes unreachable while that run loads it, and
the run fails; the warehouse comes back. With no person acting, later sensor ticks launch the file again
and it loads, once.

The daemon is emulated the way it treats a sensor's run requests: a request whose run key was already
used is skipped (that is what kept a failed file stuck forever), any other is launched (here in-process
on a test instance). The step's own transient retries are switched off (INTEGRATION_RUN_TRANSIENT_RETRIES=0) so the
run fails at once, as it does after an outage longer than those retries (about 75 s); the sensor's retry
wait is 1 s instead of 60 s (INTEGRATION_INBOX_RETRY_SECONDS)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from integration_assets.warehouse.db import get_engine
from tests.faults.accounting import Figures, account_rows, file_load_statuses
from tests.faults.files import contact_row, inbox_folder, write_contacts
from tests.support.tcp_proxy import TcpProxy

N = 500
RUN_KEY_TAG = "dagster/run_key"


class Daemon:
    """The sensor daemon's handling of one sensor's ticks, on a test instance."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        from integration_assets.definitions import defs

        self.instance, self.defs = instance, defs
        self.cursor: str | None = None
        self.launched: list[tuple[str, bool]] = []
        self.skipped: list[str] = []
        self.tick_errors = 0

    def tick(self) -> None:
        from integration_assets.sensors.inbox import inbox_run_requests

        try:
            result = inbox_run_requests(dg.build_sensor_context(instance=self.instance, cursor=self.cursor))
        except Exception:  # noqa: BLE001 - the daemon records a failed tick and ticks again later
            self.tick_errors += 1
            return
        self.cursor = result.cursor
        for req in result.run_requests or []:
            if self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: req.run_key})):
                self.skipped.append(req.run_key)  # "already completed with run keys": never launched again
                continue
            run = self.defs.resolve_job_def(req.job_name).execute_in_process(
                instance=self.instance,
                run_config=req.run_config,
                tags={**req.tags, RUN_KEY_TAG: req.run_key},
                raise_on_error=False,
            )
            self.launched.append((req.run_key, run.success))


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_daemon_warehouse_outage(
    warehouse_url: str,
    pg_proxy: TcpProxy,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    record: Callable[..., Figures],
) -> None:
    from integration_assets.assets import files as file_assets

    monkeypatch.setattr(file_assets, "MAX_TRANSIENT_RETRIES", 0, raising=False)
    monkeypatch.setenv("INTEGRATION_RUN_TRANSIENT_RETRIES", "0")
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", pg_proxy.url_for(warehouse_url))
    monkeypatch.setenv("INTEGRATION_INBOX_RETRY_SECONDS", "1")
    path = inbox_folder(isolated_env) / "contacts.csv"
    ids = write_contacts(path, [contact_row(600_000 + i) for i in range(N)])
    with dg.instance_for_test() as instance:
        daemon = Daemon(instance)
        # The tick sees the file and asks for a run; the warehouse goes away before the run loads it.
        from integration_assets.sensors.inbox import inbox_run_requests

        first = inbox_run_requests(dg.build_sensor_context(instance=instance, cursor=None))
        assert len(first.run_requests) == 1
        pg_proxy.down()
        req = first.run_requests[0]
        failed = daemon.defs.resolve_job_def(req.job_name).execute_in_process(
            instance=instance,
            run_config=req.run_config,
            tags={**req.tags, RUN_KEY_TAG: req.run_key},
            raise_on_error=False,
        )
        assert not failed.success
        daemon.cursor = first.cursor
        for _ in range(3):  # ticks during the outage
            daemon.tick()
        pg_proxy.up = True
        deadline = time.monotonic() + 60
        while path.exists() and time.monotonic() < deadline:  # ticks after it: no person acting
            daemon.tick()
            time.sleep(0.25)  # the daemon's tick interval (the scenario)
    engine = get_engine(warehouse_url)
    statuses = file_load_statuses(engine)
    fig = account_rows(
        engine,
        "daemon: warehouse down during a sensor-launched run",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=ids,
        backend="postgres",
    )
    fig.notes.append(
        f"runs launched after the failure: {daemon.launched}; run keys skipped: {len(daemon.skipped)}; ledger {statuses}"
    )
    record(fig, applied=N, dead_lettered=0)
    assert statuses.count("succeeded") == 1
    assert not path.exists()
