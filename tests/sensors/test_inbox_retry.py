"""The inbox sensor under a warehouse outage, with real runs on a real instance: the failed file is retried by
the sensor (a new run key per attempt, with backoff), the outage alert goes out without the warehouse, and the
file loads once the warehouse is back. On Postgres the outage is a TCP proxy the test cuts; on SQLite the
warehouse URL names something that cannot be opened (a directory) until it is pointed back at the file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import loads
from tests.support.tcp_proxy import TcpProxy

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


class Outage:
    """Switches the warehouse the code sees between reachable and unreachable."""

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.real, self.monkeypatch = url, monkeypatch
        self.proxy: TcpProxy | None = None
        if url.startswith("postgresql"):
            self.proxy = TcpProxy()
            self.url = self.proxy.url_for(url)
        else:
            self.url = url
            self.nowhere = tmp_path / "unopenable"  # a directory: SQLite cannot open it as a database
            self.nowhere.mkdir()
        monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", self.url)

    def down(self) -> None:
        if self.proxy is not None:
            self.proxy.up = False
            self.proxy.cut()
        else:
            self.monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", f"sqlite:///{self.nowhere}")

    def up(self) -> None:
        if self.proxy is not None:
            self.proxy.up = True
        else:
            self.monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", self.url)

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def outage(warehouse_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Outage]:
    monkeypatch.setenv("INTEGRATION_RUN_TRANSIENT_RETRIES", "0")  # the run fails at once; the sensor retries
    o = Outage(warehouse_url, monkeypatch, tmp_path)
    yield o
    o.up()
    o.close()


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    from integration_assets.sensors.inbox import inbox_run_requests

    return inbox_run_requests(dg.build_sensor_context(instance=instance, cursor=cursor))


def _run(instance: dg.DagsterInstance, req: dg.RunRequest) -> dg.ExecuteInProcessResult:
    from integration_assets.definitions import defs

    tags = {**req.tags, "dagster/run_key": req.run_key or ""}
    return defs.resolve_job_def(req.job_name).execute_in_process(
        instance=instance, run_config=req.run_config, tags=tags, raise_on_error=False
    )


def _skip(result: dg.SensorResult) -> str:
    return str(getattr(result.skip_reason, "skip_message", result.skip_reason) or "")


def _alert_log() -> list[dict[str, Any]]:
    path = get_settings().data_dir / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_file_failed_during_an_outage_is_retried_with_backoff_and_loads(
    outage: Outage, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_assets.sensors import inbox as sensor

    monkeypatch.setenv("INTEGRATION_INBOX_RETRY_SECONDS", "100")
    monkeypatch.setenv("INTEGRATION_INBOX_ALERT_ATTEMPTS", "1")
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True)
    dropped = folder / "contacts.csv"
    shutil.copy(FIXTURE, dropped)
    with dg.instance_for_test() as instance:
        first = _tick(instance, None)
        [req1] = first.run_requests
        outage.down()
        failed = _run(instance, req1)  # the warehouse went down under the run
        assert not failed.success and dropped.exists()

        # Still down: the tick neither crashes nor moves the file; it alerts without the warehouse.
        during = _tick(instance, first.cursor)
        assert during.run_requests == [] and "warehouse unreachable" in _skip(during)
        [fired] = [a for a in _alert_log() if a["status"] == "firing"]
        assert fired["key"].startswith("inbox:stuck:hubspot/contacts:") and fired["details"]["attempts"] == 1
        assert "contacts.csv" in fired["details"]["file"]
        again = _tick(instance, during.cursor)  # the same episode is not sent twice
        assert len([a for a in _alert_log() if a["status"] == "firing"]) == 1

        outage.up()
        end = instance.get_run_record_by_id(failed.run_id).end_time
        # Back up, but the backoff (100 s after the failed run) has not passed: no run yet.
        monkeypatch.setattr(sensor, "_clock", lambda: end + 50)
        early = _tick(instance, again.cursor)
        assert early.run_requests == [] and "attempt 2 in 50 s" in _skip(early)
        monkeypatch.setattr(sensor, "_clock", lambda: end + 101)
        retry = _tick(instance, early.cursor)
        [req2] = retry.run_requests
        assert req2.run_key != req1.run_key and req2.run_key.endswith(":attempt2")  # not deduplicated away
        assert _run(instance, req2).success
        assert not dropped.exists()

        after = _tick(instance, retry.cursor)
        assert after.run_requests == []
    # One FIRING and one RESOLVED for the episode, though the warehouse came back in between.
    assert [(a["status"], a["key"]) for a in _alert_log()] == [
        ("firing", fired["key"]),
        ("resolved", fired["key"]),
    ]
    with get_engine(warehouse_url).connect() as conn:
        statuses = [r[0] for r in conn.execute(sa.select(loads.c.status))]
    assert statuses == ["succeeded"]  # the failed attempt never reached the ledger; the retry loaded it once


def test_backoff_doubles_per_attempt_up_to_the_cap() -> None:
    from integration_assets.sensors.inbox import Retry

    policy = Retry(base=60, cap=3600, alert_attempts=4, alert_seconds=3600)
    assert [policy.wait(n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


@pytest.mark.usefixtures("warehouse_url")
def test_a_cursor_from_before_retries_is_read() -> None:
    from integration_assets.sensors.inbox import _load_cursor

    old = json.dumps({"/inbox/hubspot/contacts/a.csv": [10, 1.0, "ab" * 32]})
    state = _load_cursor(old)
    assert state["hashes"] == {"/inbox/hubspot/contacts/a.csv": [10, 1.0, "ab" * 32]}
    assert state["stuck"] == {} and state["alerts"] == {}


def test_a_run_that_starts_while_the_warehouse_is_down_retries_its_step(
    outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTEGRATION_RUN_TRANSIENT_RETRIES", "1")
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True)
    shutil.copy(FIXTURE, folder / "contacts.csv")
    with dg.instance_for_test() as instance:
        [req] = _tick(instance, None).run_requests
        outage.down()  # before the step migrates/connects: that first contact is retried like any other
        result = _run(instance, req)
        retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert not result.success and [e.step_key for e in retried] == ["warehouse__contacts"]
    assert (folder / "contacts.csv").exists()
