"""The inbox at its edges, on SQLite and Postgres: a file growing during its load, two loaders on one file (threads
and real processes), a loader killed mid-way, names that are not exports (hidden, temporary, symlinks) and the
exit code of ``sync``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.ingest import archive, inbox
from integration_assets.ingest import load as ingest
from integration_assets.ingest.process import process
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import contacts, loads
from tests.ingest.test_load import CONTACT_HEADER, contact, csv_bytes
from tests.support.waits import wait_until

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"

# A child process that loads the inbox through sync.run_pending, pausing inside the claimed load (after the
# ledger's running row is committed, before the merge) until the release file appears. It writes its pid to the
# marker file when it gets there.
CHILD = """
import json, os, sys, time
from pathlib import Path
import integration_assets.ingest.load as ingest
marker, release = Path(sys.argv[1]), Path(sys.argv[2])
real = ingest._load
def paused(*args, **kwargs):
    marker.write_text(str(os.getpid()))
    while not release.exists():
        time.sleep(0.02)  # polls for the test's release file
    return real(*args, **kwargs)
ingest._load = paused
from integration_assets.cli.sync import run_pending
result = run_pending()
print(json.dumps(result.as_dict(), default=str))
sys.exit(0 if result.ok else 1)
"""


def _put(name: str, data: bytes, folder: str = "hubspot/contacts") -> Path:
    path = get_settings().inbox_dir / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rows(ids: range) -> list[list[str]]:
    return [contact(str(i)) for i in ids]


def _ledger(url: str) -> list[dict[str, Any]]:
    with get_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(loads).order_by(loads.c.started_at))]


def _contact_ids(url: str) -> set[str]:
    with get_engine(url).connect() as conn:
        return {r[0] for r in conn.execute(sa.select(contacts.c.source_id))}


def _archived() -> list[Path]:
    return sorted(p for p in get_settings().archive_dir.rglob("*") if p.is_file())


def _child(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    marker, release = tmp_path / "in_load", tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), str(release)],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, marker, release


# -- a file that grows during its load ------------------------------------------------------------------------
def test_rows_appended_during_the_load_are_loaded_as_a_new_version(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = csv_bytes(CONTACT_HEADER, _rows(range(1, 7)))
    path = _put("contacts.csv", first)
    appended = csv_bytes(CONTACT_HEADER, _rows(range(7, 13))).split(b"\n", 1)[1]  # the rows, no header
    real = ingest._load

    def load_then_append(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        with path.open("ab") as fh:  # the exporter writes more rows after the reader went past its end
            fh.write(appended)

    monkeypatch.setattr(ingest, "_load", load_then_append)
    [f] = inbox.scan()
    r1 = process(f)
    assert (r1.status, r1.rows_read) == ("succeeded", 6)
    assert r1.content_hash == hashlib.sha256(first).hexdigest()
    # What was archived is exactly what was loaded; the grown file stays in the inbox.
    [archived] = _archived()
    assert archived.read_bytes() == first
    assert path.read_bytes() == first + appended
    monkeypatch.setattr(ingest, "_load", real)

    [f] = inbox.scan()
    r2 = process(f)
    assert (r2.status, r2.rows_read, r2.rows_inserted, r2.rows_unchanged) == ("succeeded", 12, 6, 6)
    assert _contact_ids(warehouse_url) == {str(i) for i in range(1, 13)}
    assert not path.exists()
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in _archived()} == {
        r1.content_hash,
        r2.content_hash,
    }
    assert not any((get_settings().data_dir / "processing").rglob("*.csv"))  # no snapshot left behind


# -- two loaders on one file ----------------------------------------------------------------------------------
def test_two_loaders_in_one_process_load_a_file_once(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _put("contacts.csv", FIXTURE.read_bytes())
    inside, release = threading.Event(), threading.Event()
    real = ingest._load

    def paused(*args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "first":
            inside.set()
            assert release.wait(120)
        real(*args, **kwargs)

    monkeypatch.setattr(ingest, "_load", paused)
    [f] = inbox.scan()
    outcome: dict[str, Any] = {}
    first = threading.Thread(target=lambda: outcome.update(first=process(f)), name="first")
    first.start()
    assert inside.wait(120)
    second = process(f)  # while the first holds the claim
    release.set()
    first.join(120)
    assert second.status == "already_loading" and outcome["first"].load_id in (second.error or "")
    assert path.exists() is False and outcome["first"].status == "succeeded"
    statuses = sorted(r["status"] for r in _ledger(warehouse_url))
    assert statuses == ["already_loading", "succeeded"]
    assert len(_archived()) == 1


def test_two_sync_processes_on_one_file_load_it_once(warehouse_url: str, tmp_path: Path) -> None:
    _put("contacts.csv", FIXTURE.read_bytes())
    proc, marker, release = _child(tmp_path)
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, "the first sync to claim the file")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        second = subprocess.run(
            [str(Path(sys.executable).parent / "integration-assets"), "sync", "--json"],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        release.touch()
        out, err = proc.communicate(timeout=300)
    assert second.returncode == 0, second.stderr
    assert "FileNotFoundError" not in second.stderr + err
    skipped = [ld for ld in json.loads(second.stdout)["loads"] if ld["status"] == "already_loading"]
    assert len(skipped) == 1 and "already being loaded by" in skipped[0]["error"]
    assert proc.returncode == 0, err
    rows = _ledger(warehouse_url)
    assert sorted(r["status"] for r in rows) == ["already_loading", "succeeded"]
    [ok] = [r for r in rows if r["status"] == "succeeded"]
    assert ok["rows_read"] == 6 and ok["owner_pid"] == int(marker.read_text())
    assert len(_archived()) == 1 and not any(get_settings().inbox_dir.rglob("*.csv"))


def test_sync_cli_says_a_file_is_already_being_loaded() -> None:
    from integration_assets.cli.sync import SyncResult, render_summary

    result = SyncResult(
        loads=[
            {
                "status": "already_loading",
                "source_system": "hubspot",
                "entity": "contacts",
                "file_name": "c.csv",
                "error": "already being loaded by ld_1 (pid 7 on h)",
                **{
                    k: 0
                    for k in (
                        "rows_read",
                        "rows_inserted",
                        "rows_updated",
                        "rows_unchanged",
                        "rows_duplicate",
                        "rows_quarantined",
                    )
                },
            }
        ]
    )
    runner = CliRunner()
    import click

    @click.command()
    def show() -> None:
        render_summary(result)

    out = runner.invoke(show).output
    assert "c.csv" in out and "already being loaded by ld_1" in out and result.ok


# -- a loader killed mid-way ----------------------------------------------------------------------------------
def test_a_load_killed_mid_way_is_marked_abandoned_and_the_file_loads(
    warehouse_url: str, tmp_path: Path
) -> None:
    from integration_assets.cli.sync import run_pending

    _put("contacts.csv", FIXTURE.read_bytes())
    proc, marker, _release = _child(tmp_path)
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, "the sync to claim the file")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        [running] = [r for r in _ledger(warehouse_url) if r["status"] == "running"]
        assert running["owner_pid"] == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    snapshot = get_settings().data_dir / "processing" / running["load_id"]
    assert (snapshot / "contacts.csv").exists()  # the copy the killed load was reading
    result = run_pending()
    assert result.abandoned == [running["load_id"]]
    assert not snapshot.exists()
    by_id = {r["load_id"]: r for r in _ledger(warehouse_url)}
    dead = by_id[running["load_id"]]
    assert dead["status"] == "abandoned" and f"pid {proc.pid}" in dead["error"] and "is gone" in dead["error"]
    assert dead["finished_at"] is not None
    assert [r["status"] for r in by_id.values() if r["load_id"] != dead["load_id"]] == ["succeeded"]
    assert result.ok and not any(get_settings().inbox_dir.rglob("*.csv"))


def test_a_live_load_is_not_abandoned_and_another_hosts_only_after_its_lease(warehouse_url: str) -> None:
    from integration_assets.warehouse import ledger
    from integration_assets.warehouse.ledger import LoadReport

    engine = get_engine(warehouse_url)
    now = ledger.utcnow()
    old = now - timedelta(seconds=700)
    ledger.claim(
        engine,
        LoadReport(
            load_id="ld_live",
            source_system="hubspot",
            entity="contacts",
            file_name="a.csv",
            content_hash="ef" * 32,
        ),
    )  # a load this process is running
    rows = [("ld_far_fresh", "elsewhere", 1, None, now), ("ld_far_stale", "elsewhere", 1, None, old)]
    with engine.begin() as conn:
        for i, (load_id, host, pid, started, beat) in enumerate(rows):
            conn.execute(
                loads.insert().values(
                    load_id=load_id,
                    source_system="hubspot",
                    entity="contacts",
                    kind="file",
                    status="running",
                    content_hash=f"{i:064x}",
                    started_at=beat,
                    heartbeat_at=beat,
                    owner_host=host,
                    owner_pid=pid,
                    owner_started=started,
                )
            )
    try:
        assert ledger.abandon_stale(engine, lease=600) == ["ld_far_stale"]
    finally:
        ledger.release("ld_live")
    by_id = {r["load_id"]: r for r in _ledger(warehouse_url)}
    assert by_id["ld_live"]["status"] == by_id["ld_far_fresh"]["status"] == "running"
    assert "no sign of life from pid 1 on elsewhere" in by_id["ld_far_stale"]["error"]


# -- names that are not exports -------------------------------------------------------------------------------
def test_hidden_temporary_and_linked_entries_are_each_accounted_for(
    warehouse_url: str, tmp_path: Path
) -> None:
    from integration_assets.cli.sync import run_pending

    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "contacts.csv"
    target.write_bytes(FIXTURE.read_bytes())
    hidden = _put(".contacts.csv", FIXTURE.read_bytes())
    fresh_part = _put("upload.csv.part", b"Record ID\n1\n")
    stale_tmp = _put("upload.csv.tmp", b"Record ID\n1\n")
    os.utime(stale_tmp, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    link = get_settings().inbox_dir / "hubspot" / "contacts" / "linked.csv"
    link.symlink_to(target)
    (get_settings().inbox_dir / "odoo").mkdir(parents=True)
    linked_dir = get_settings().inbox_dir / "odoo" / "res.partner"
    linked_dir.symlink_to(outside, target_is_directory=True)

    result = run_pending()
    assert result.runs == []  # nothing loadable: no link was followed
    by_name = {ld["file_name"]: ld for ld in result.loads}
    assert {name: ld["reason_code"] for name, ld in by_name.items()} == {
        ".contacts.csv": "hidden_file",
        "linked.csv": "symlink",
        "res.partner": "symlink",
        "upload.csv.tmp": "stale_temp_file",
    }
    with get_engine(warehouse_url).connect() as conn:
        ledgered = {r[0]: r[1] for r in conn.execute(sa.select(loads.c.file_name, loads.c.error))}
    assert ledgered["linked.csv"].startswith("symlink: ")  # the ledger and the dead letters say why
    assert all(ld["status"] == "rejected" for ld in result.loads) and len(result.loads) == 4
    assert [i["file"] for i in result.ignored] == ["hubspot/contacts/upload.csv.part"]
    assert fresh_part.exists() and not hidden.exists() and not stale_tmp.exists()
    rejected = get_settings().rejected_dir
    assert (rejected / "hubspot" / "contacts" / "linked.csv").is_symlink()  # moved as a link
    assert target.read_bytes() == FIXTURE.read_bytes() and (outside / "contacts.csv").exists()
    assert (
        json.loads((rejected / "hubspot" / "contacts" / "linked.csv.reason.json").read_text())["reason_code"]
        == "symlink"
    )
    assert _contact_ids(warehouse_url) == set()


# -- exit codes -----------------------------------------------------------------------------------------------
def test_sync_exits_0_when_a_blocking_check_fails(warehouse_url: str) -> None:
    from integration_assets.cli import main
    from tests.quality.factories import T0

    # A contact already stored with an e-mail the export gives another id: the blocking keys check fails.
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(
            contacts.insert().values(
                source_system="hubspot",
                source_id="999",
                source_updated_at=T0,
                mapping_version="hubspot.contacts.csv@v1",
                load_id="ld_x",
                row_hash=1,
                email="ann.lee@example.com",
            )
        )
    _put("contacts.csv", FIXTURE.read_bytes())
    res = CliRunner().invoke(main, ["sync", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    [run] = out["runs"]
    assert out["ok"] and not run["success"] and not run["crashed"]
    assert run["checks_failed"] == ["warehouse/contacts:keys"]
    assert [ld["status"] for ld in out["loads"]] == ["succeeded"]


def test_sync_exits_non_zero_when_the_warehouse_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from integration_assets.cli import main

    monkeypatch.setenv(
        "INTEGRATION_WAREHOUSE_URL", "postgresql+psycopg://postgres:s3cret@127.0.0.1:9/nowhere"
    )
    _put("contacts.csv", FIXTURE.read_bytes())
    res = CliRunner().invoke(main, ["sync"])
    assert res.exit_code == 2
    assert "the warehouse is unreachable" in res.stderr and "s3cret" not in res.output + res.stderr
    assert (get_settings().inbox_dir / "hubspot" / "contacts" / "contacts.csv").exists()


# -- status -----------------------------------------------------------------------------------------------
def test_status_lists_stuck_files_and_what_the_inbox_leaves_alone(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_assets.cli import main

    _put("contacts.csv", FIXTURE.read_bytes())
    _put("next.csv.part", b"Record ID\n")

    def lost(*args: Any, **kwargs: Any) -> None:  # the warehouse connection drops mid-load
        raise sa.exc.OperationalError("INSERT", {}, ConnectionResetError("connection to server lost"))

    real = ingest._load
    monkeypatch.setattr(ingest, "_load", lost)
    [f] = inbox.scan()
    for _ in range(2):
        with pytest.raises(sa.exc.OperationalError):
            process(f)
    monkeypatch.setattr(ingest, "_load", real)
    res = CliRunner().invoke(main, ["status", "--json"], catch_exceptions=False)
    data = json.loads(res.stdout)["inbox"]
    [stuck] = data["stuck"]
    assert stuck["file"] == "hubspot/contacts/contacts.csv" and stuck["attempts"] == 2
    assert "OperationalError" in stuck["last_error"] and "connection to server lost" in stuck["last_error"]
    assert data["waiting"] == 0 and [i["file"] for i in data["ignored"]] == ["hubspot/contacts/next.csv.part"]
    assert ".part" in data["ignore_rule"]
    text = CliRunner().invoke(main, ["status"], catch_exceptions=False).output
    assert "stuck hubspot/contacts/contacts.csv: 2 failed attempt(s)" in text and "rule: " in text
    assert not any((get_settings().data_dir / "processing").rglob("*.csv"))  # the failed loads' snapshots


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_running_load_keeps_its_heartbeat_fresh_on_postgres(warehouse_url: str) -> None:
    from integration_assets.warehouse import ledger
    from integration_assets.warehouse.ledger import LoadReport, new_load_id

    engine = get_engine(warehouse_url)
    report = LoadReport(
        load_id=new_load_id(),
        source_system="hubspot",
        entity="contacts",
        file_name="c.csv",
        content_hash="cd" * 32,
    )
    ledger.claim(engine, report)

    def beat() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(loads.c.heartbeat_at).where(loads.c.load_id == report.load_id)
            ).scalar_one()

    first = beat()
    with ledger.heartbeat(engine, report.load_id, every=0.05):  # (SQLite: none, its write lock is the load's)
        wait_until(lambda: beat() != first, "a heartbeat", timeout_s=30)
    assert ledger.abandon_stale(engine, load_ids=[report.load_id], lease=600) == []


def test_a_file_archived_by_another_loader_during_the_copy_is_archived_once(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_assets.warehouse import ledger
    from integration_assets.warehouse.ledger import LoadReport, new_load_id

    path = _put("contacts.csv", FIXTURE.read_bytes())
    real = ingest.snapshot

    def copied_then_taken(src: Path, dest: Path) -> tuple[str, int]:
        out = real(src, dest)
        # Meanwhile another loader finished this content and archived the file.
        other = LoadReport(
            load_id=new_load_id(),
            source_system="hubspot",
            entity="contacts",
            file_name=src.name,
            content_hash=out[0],
            status="succeeded",
        )
        with get_engine(warehouse_url).begin() as conn:
            ledger.start(conn, other)
            ledger.finish(conn, other)
        [f] = inbox.scan()
        archive.archive(f, out[0])
        return out

    monkeypatch.setattr(ingest, "snapshot", copied_then_taken)
    [f] = inbox.scan()
    report = process(f)
    assert report.status == "duplicate_file" and not path.exists()
    assert len(_archived()) == 1  # the other loader's; this one's copy is dropped
    assert not any((get_settings().data_dir / "processing").rglob("*.csv"))


@pytest.mark.parametrize(
    "warehouse_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_retry_in_the_same_process_takes_over_the_claim_its_lost_attempt_left(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration_assets.warehouse import writer
    from tests.support.tcp_proxy import TcpProxy

    proxy = TcpProxy()
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", proxy.url_for(warehouse_url))
    path = _put("contacts.csv", FIXTURE.read_bytes())
    merge = writer.CanonicalStage.merge

    def merge_while_the_warehouse_goes(self: Any, *args: Any, **kwargs: Any) -> Any:
        proxy.up = False
        proxy.cut()  # the load's transaction is gone, and so is any way to record its failure
        return merge(self, *args, **kwargs)

    try:
        monkeypatch.setattr(writer.CanonicalStage, "merge", merge_while_the_warehouse_goes)
        [f] = inbox.scan()
        with pytest.raises(sa.exc.OperationalError):
            process(f)
        monkeypatch.setattr(writer.CanonicalStage, "merge", merge)
        proxy.up = True
        [lost] = [r for r in _ledger(warehouse_url) if r["status"] == "running"]
        retry = process(f)  # what the step's transient retry does, in the same process
    finally:
        proxy.close()
    assert retry.status == "succeeded" and not path.exists()
    by_id = {r["load_id"]: r for r in _ledger(warehouse_url)}
    assert by_id[lost["load_id"]]["status"] == "abandoned"
    assert "earlier attempt in this process" in by_id[lost["load_id"]]["error"]
    assert sorted(r["status"] for r in by_id.values()) == ["abandoned", "succeeded"]


def test_a_run_marks_loads_of_dead_processes_abandoned(warehouse_url: str) -> None:
    import dagster as dg

    from integration_assets.definitions import defs
    from integration_assets.warehouse import ledger

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that ran a load of another file and died
    me = ledger.this_process()
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(
            loads.insert().values(
                load_id="ld_dead",
                source_system="odoo",
                entity="res.partner",
                kind="file",
                status="running",
                content_hash="0" * 64,
                started_at=ledger.utcnow(),
                owner_host=me.host,
                owner_pid=gone.pid,
            )
        )
    path = _put("contacts.csv", FIXTURE.read_bytes())
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("ingest_hubspot_contacts").execute_in_process(
            instance=instance,
            run_config={"ops": {"raw__hubspot__contacts": {"config": {"files": [str(path)]}}}},
            raise_on_error=False,
        )
    assert result.success
    by_id = {r["load_id"]: r for r in _ledger(warehouse_url)}
    assert by_id["ld_dead"]["status"] == "abandoned" and f"pid {gone.pid}" in by_id["ld_dead"]["error"]
