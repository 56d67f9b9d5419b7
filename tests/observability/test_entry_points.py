"""Every entry point writes JSON log lines with correlation ids: the CLI (a load, a drain), the receiver."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from integration_assets.ingest.load import ingest_file
from integration_assets.observability.logging import configure_logging
from tests.support.servers import free_port

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"
CLI = [sys.executable, "-c", "from integration_assets.cli import entry; entry()"]


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every stderr line is one JSON object (nothing else is written there on success)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_load_logs_carry_correlation_ids(warehouse_url: str) -> None:
    buf = io.StringIO()
    handler = configure_logging("INFO", json=True, stream=buf)
    try:
        report = ingest_file(FIXTURE, "hubspot", "contacts")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    mine = [x for x in lines if x.get("logger") == "integration_assets.ingest.load"]
    assert mine and mine[-1]["load_id"] == report.load_id
    assert (mine[-1]["source_system"], mine[-1]["entity"]) == ("hubspot", "contacts")
    assert "ann.lee@example.com" not in buf.getvalue()


def test_cli_sync_writes_json_lines_with_the_load_and_run_ids(isolated_env: Path) -> None:
    env = {**os.environ, "INTEGRATION_LOG_LEVEL": "INFO"}
    assert subprocess.run([*CLI, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    inbox = isolated_env / "inbox" / "hubspot" / "contacts"
    inbox.mkdir(parents=True)
    shutil.copy(FIXTURE, inbox / FIXTURE.name)
    proc = subprocess.run([*CLI, "sync", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["ok"] is True  # stdout stays the command's output
    lines = json_lines(proc.stderr)
    [load] = [x for x in lines if x["logger"] == "integration_assets.ingest.load"]
    assert load["load_id"].startswith("ld_") and load["run_id"] and load["entity"] == "contacts"
    assert {"timestamp", "level", "message"} <= set(load)
    assert "ann.lee@example.com" not in proc.stderr
    assert not [x for x in lines if x["logger"] == "alembic.runtime.plugins"]


def test_cli_keeps_info_lines_off_the_terminal_by_default(isolated_env: Path) -> None:
    env = {**os.environ}
    assert subprocess.run([*CLI, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    inbox = isolated_env / "inbox" / "hubspot" / "contacts"
    inbox.mkdir(parents=True)
    shutil.copy(FIXTURE, inbox / FIXTURE.name)
    proc = subprocess.run([*CLI, "sync", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["ok"] is True
    assert [x for x in json_lines(proc.stderr) if x["level"] == "INFO"] == []


def test_cli_drain_writes_json_lines_with_the_drain_id(isolated_env: Path) -> None:
    env = {**os.environ, "INTEGRATION_QUEUE_URL": "sql", "INTEGRATION_LOG_LEVEL": "INFO"}
    assert subprocess.run([*CLI, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    proc = subprocess.run(
        [*CLI, "events", "drain", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    [summary] = [x for x in json_lines(proc.stderr) if x["logger"] == "integration_assets.events.drain"]
    assert summary["drain_id"] == report["drain_id"]


def test_the_receiver_logs_json_lines(isolated_env: Path) -> None:
    port = free_port()
    env = {**os.environ, "INTEGRATION_QUEUE_URL": "sql"}
    subprocess.run([*CLI, "db", "upgrade"], env=env, capture_output=True, timeout=120, check=True)
    proc = subprocess.Popen(
        [*CLI, "webhooks", "serve", "--port", str(port), "--log-level", "info", "--access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    lines = json_lines(err)
    loggers = {x["logger"] for x in lines}
    assert "uvicorn.error" in loggers  # uvicorn's own lines go through the project's handler
    assert "uvicorn.access" in loggers
