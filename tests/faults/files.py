"""File producers of the fault scenarios: HubSpot contacts exports (the UI's CSV) written row by row, with
the ids they carry, and runs of ``integration-assets sync`` in a process of its own."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HUBSPOT_CONTACT_COLUMNS = [
    "Record ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone Number",
    "Contact owner",
    "Primary Associated Company ID",
    "Last Activity Date",
    "Lead Status",
    "Marketing contact status",
    "Create Date",
    "Associated Company",
    "Lifecycle Stage",
    "Country/Region",
    "Last Modified Date",
]


CLI = [sys.executable, "-c", "from integration_assets.cli import entry; entry()"]


def contact_row(i: int, modified: str = "2024-02-01 10:00", **override: str) -> dict[str, str]:
    row = {
        "Record ID": str(i),
        "First Name": f"F{i}",
        "Last Name": f"L{i}",
        "Email": f"c{i}@example.com",
        "Phone Number": f"+1 555-{i % 10000:04d}",
        "Contact owner": "Sam Ortiz",
        "Primary Associated Company ID": "",
        "Last Activity Date": "",
        "Lead Status": "Open",
        "Marketing contact status": "Marketing contact",
        "Create Date": "2024-01-02 10:00",
        "Associated Company": "",
        "Lifecycle Stage": "Lead",
        "Country/Region": "Spain",
        "Last Modified Date": modified,
    }
    row.update(override)
    return row


def write_contacts(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> list[str]:
    """Write a contacts export; returns the Record IDs it carries."""
    columns = columns or HUBSPOT_CONTACT_COLUMNS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, quoting=csv.QUOTE_ALL, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return [r["Record ID"] for r in rows]


def inbox_folder(data_dir: Path, system: str = "hubspot", entity: str = "contacts") -> Path:
    folder = data_dir / "inbox" / system / entity
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sync_process(
    env: dict[str, str] | None = None, timeout_s: float = 240
) -> tuple[int, dict[str, Any] | None, str]:
    """``integration-assets sync --json`` in its own process; returns (exit code, JSON summary, stderr)."""
    proc = subprocess.run(
        [*CLI, "sync", "--json"],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
    )
    summary = None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    return proc.returncode, summary, proc.stderr[-3000:]


def sync_popen(env: dict[str, str] | None = None, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "sync", "--json"],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
