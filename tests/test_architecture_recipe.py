"""docs/ARCHITECTURE.md "Add an entity" is followed as written, so the recipe cannot drift from the code.

Every fenced block marked ``<!-- recipe:<action> <args> -->`` in the doc is applied to a copy of the package
(new file, append, replace one line, or a file dropped into the inbox). A fresh interpreter then runs
``integration-assets sync`` on that copy and loads its Dagster definitions, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL, service_required

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
STEP = re.compile(r"<!-- recipe:(\w+) (.+?) -->\n```\w*\n(.*?)```", re.S)

pytestmark = pytest.mark.slow

# Runs inside the copy: the sync the doc's "Try it" shows, then what the warehouse and Dagster now hold.
PROBE = """
import json, sys
import sqlalchemy as sa
import integration_assets
assert integration_assets.__file__.startswith(sys.argv[1]), integration_assets.__file__
from integration_assets.cli import main
try:
    main(["sync"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
from integration_assets.definitions import defs
from integration_assets.settings import get_settings
engine = sa.create_engine(get_settings().warehouse_url)
with engine.connect() as conn:
    rows = conn.execute(sa.text("SELECT source_id, subject, status, priority FROM tickets ORDER BY source_id"))
    tickets = [list(r) for r in rows]
    dead = [list(r) for r in conn.execute(sa.text(
        "SELECT natural_key, check_name FROM dead_letters WHERE source_system = 'hubspot' AND entity = 'tickets'"
    ))]
graph = defs.resolve_asset_graph()
print("RESULT " + json.dumps({
    "tickets": tickets,
    "dead": dead,
    "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "checks": sorted(k.to_user_string() for k in graph.asset_check_keys),
    "jobs": sorted(j.name for j in defs.resolve_all_job_defs()),
}))
"""


def _steps() -> list[tuple[str, str, str]]:
    steps = STEP.findall(DOC.read_text(encoding="utf-8"))
    assert {a for a, _, _ in steps} == {"new", "append", "replace", "inbox"}, steps
    return steps


def _follow(copy: Path, inbox: Path) -> None:
    for action, args, body in _steps():
        if action == "new":
            target = copy / args
            assert not target.exists(), f"the recipe would overwrite {args}"
            target.write_text(body, encoding="utf-8")
        elif action == "append":
            target = copy / args
            target.write_text(target.read_text(encoding="utf-8") + "\n\n" + body, encoding="utf-8")
        elif action == "replace":
            path, prefix = args.split(" ", 1)
            target = copy / path
            lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
            hits = [i for i, ln in enumerate(lines) if ln.startswith(prefix)]
            assert len(hits) == 1, f"{path}: expected one line starting with {prefix!r}, found {len(hits)}"
            lines[hits[0]] = body
            target.write_text("".join(lines), encoding="utf-8")
        else:
            target = inbox / args
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")


def _postgres_url() -> tuple[str, sa.Engine, str]:
    service_required("PostgreSQL", "127.0.0.1", 5432)
    name = f"ia_recipe_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, admin, name


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_add_an_entity_recipe_works_as_written(backend: str, tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(
        ROOT / "integration_assets",
        copy / "integration_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    data = tmp_path / "data"
    _follow(copy, data / "inbox")

    admin = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url, admin, name = _postgres_url()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATION_", "DAGSTER_"))}
    env |= {
        "PYTHONPATH": str(copy),
        "INTEGRATION_DATA_DIR": str(data),
        "INTEGRATION_WAREHOUSE_URL": url,
        "INTEGRATION_INBOX_SETTLE_SECONDS": "0",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, str(copy)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    got = json.loads(line.removeprefix("RESULT "))

    # "2 rows are inserted and the third is quarantined" (the doc's Try it).
    assert got["tickets"] == [["9001", "Printer on fire", "1", "HIGH"], ["9002", "Invoice copy", "4", "LOW"]]
    assert got["dead"] == [["9003", "unknown_value"]]
    # Step 5: the assets, job and checks come from the contract, with no Python in the Dagster layer.
    assert {"raw/hubspot/tickets", "warehouse/tickets"} <= set(got["assets"])
    assert "ingest_hubspot_tickets" in got["jobs"]
    for check in ("volume", "quarantine_rate", "dead_letter_backlog", "drift", "keys", "gx_suite"):
        assert f"warehouse/tickets:{check}" in got["checks"], check
