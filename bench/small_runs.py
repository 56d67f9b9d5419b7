"""Small runs (issue 14): how long a Dagster run takes for a 6-row file, a one-event drain and the hourly
quality checks, each launched as its own process the way the daemon launches a run.

On the embedded default (SQLite warehouse and SQL queue, SQLite Dagster instance) in a temporary directory:
``integration-assets demo`` fills it, then each measurement runs ``dagster job execute`` in a fresh process
(import, run, every step with the job's own executor) and reads the run's duration from the instance. The
sensor's interval is not included: the clock starts when the run's process starts.

- file: a new 6-row HubSpot contacts CSV in the inbox → ``ingest_hubspot_contacts``; "to rows" is the time
  until its 6 rows are in ``contacts`` (polled every 50 ms), "run" the run's duration, "process" the wall time;
- drain: one HubSpot contact change enqueued → ``drain_events``; "to applied" until the new value is in
  ``contacts``;
- quality_checks: the whole job, and (when the tree has ``checks.scope``) what the hourly schedule would
  request right after the demo.

    .venv/bin/python bench/small_runs.py                    # this tree, 3 repetitions
    .venv/bin/python bench/small_runs.py --src /tmp/before  # another checkout of the project (e.g. git archive)
    .venv/bin/python bench/small_runs.py --skip-quality     # only the file load and the drain
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    '"Record ID","First Name","Last Name","Email","Phone Number","Contact owner","Primary Associated Company ID",'
    '"Last Activity Date","Lead Status","Marketing contact status","Create Date","Associated Company",'
    '"Lifecycle Stage","Country/Region","Last Modified Date"'
)


def _env(work: Path, src: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATION_", "DAGSTER_"))}
    env.update(
        INTEGRATION_DATA_DIR=str(work / "data"),
        INTEGRATION_INBOX_SETTLE_SECONDS="0",
        DAGSTER_HOME=str(work / "dagster"),
        PYTHONPATH=str(src),
    )
    return env


def _csv(path: Path, first_id: int) -> list[str]:
    ids = [str(first_id + i) for i in range(6)]
    rows = [
        f'"{i}","Bench","N{i}","bench{i}@example.com","","Sam Ortiz","","","New","Marketing contact",'
        f'"2024-01-02 10:00","","Lead","France","2024-02-01 10:00"'
        for i in ids
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    tmp.rename(path)
    return ids


def _wait_until(proc: subprocess.Popen[bytes], probe: Any, t0: float) -> float | None:
    """Seconds from t0 until ``probe()`` is true (None if the process ended first and it never was)."""
    while True:
        if probe():
            return time.perf_counter() - t0
        if proc.poll() is not None:
            return time.perf_counter() - t0 if probe() else None
        time.sleep(0.05)


def _last_run_seconds(job: str) -> float:
    import dagster as dg

    instance = dg.DagsterInstance.get()
    [rec] = instance.get_run_records(dg.RunsFilter(job_name=job), limit=1)
    assert rec.start_time and rec.end_time, rec
    return rec.end_time - rec.start_time


def _execute(
    env: dict[str, str], src: Path, job: str, config: dict | None, probe: Any = None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "integration_assets.definitions",
        "-a",
        "defs",
    ]
    cmd += ["-j", job]
    if config is not None:
        cfg = Path(env["DAGSTER_HOME"]) / f"{job}.json"
        cfg.write_text(json.dumps(config))
        cmd += ["-c", str(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = _wait_until(proc, probe, t0) if probe else None
    proc.wait()
    wall = time.perf_counter() - t0
    return {
        "process_s": round(wall, 2),
        "run_s": round(_last_run_seconds(job), 2),
        "first_s": first,
        "rc": proc.returncode,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=ROOT, help="the project tree to measure (default: this one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--skip-quality", action="store_true", help="leave out the quality_checks runs")
    args = ap.parse_args()
    src = args.src.resolve()
    work = Path(tempfile.mkdtemp(prefix="small_runs_"))
    env = _env(work, src)
    (work / "dagster").mkdir()
    shutil.copy(src / "dagster.yaml", work / "dagster" / "dagster.yaml")
    os.environ.update(env)
    sys.path.insert(0, str(src))

    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from integration_assets.cli import main; main()", "demo"],
        cwd=src,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    demo_s = time.perf_counter() - t0

    import sqlalchemy as sa

    from integration_assets.providers import PROVIDERS
    from integration_assets.queue.sql import SqlQueue
    from integration_assets.sandbox.events import hubspot_change
    from integration_assets.settings import get_settings
    from integration_assets.warehouse.db import get_engine
    from integration_assets.warehouse.schema import contacts
    from integration_assets.webhooks.receive import provider_messages

    settings = get_settings()
    engine = get_engine(settings.warehouse_url)
    results: dict[str, Any] = {"src": str(src), "demo_s": round(demo_s, 1), "file": [], "drain": []}

    for n in range(args.repeat):
        path = settings.inbox_dir / "hubspot" / "contacts" / f"bench_{n}.csv"
        ids = _csv(path, 990_000 + 10 * n)

        def rows_in(ids: list[str] = ids) -> bool:
            with engine.connect() as conn:
                q = sa.select(sa.func.count()).select_from(contacts).where(contacts.c.source_id.in_(ids))
                return conn.execute(q).scalar_one() == len(ids)

        config = {"ops": {"raw__hubspot__contacts": {"config": {"files": [str(path)]}}}}
        r = _execute(env, src, "ingest_hubspot_contacts", config, rows_in)
        results["file"].append(r)
        print(json.dumps({"file": r}), file=sys.stderr, flush=True)  # progress: survives an interrupted run

        value = f"Drained{n}"
        at = datetime.now(UTC) - timedelta(seconds=1)
        doc = [hubspot_change(880_000 + n, ids[0], "firstname", value, at)]
        body = json.dumps(doc).encode()
        SqlQueue(settings.warehouse_url).publish_many(
            provider_messages(PROVIDERS["hubspot"], doc, body, {"content-type": "application/json"}, at)
        )

        def applied(cid: str = ids[0], value: str = value) -> bool:
            with engine.connect() as conn:
                q = sa.select(contacts.c.first_name).where(contacts.c.source_id == cid)
                return conn.execute(q).scalar() == value

        results["drain"].append(_execute(env, src, "drain_events", None, applied))
        print(json.dumps({"drain": results["drain"][-1]}), file=sys.stderr, flush=True)

    results["quality_full"] = {} if args.skip_quality else _execute(env, src, "quality_checks", None)
    if not args.skip_quality and (src / "integration_assets" / "checks" / "scope.py").exists():
        results["quality_scoped"] = _scoped(env, src)

    def p50(rows: list[dict[str, Any]], k: str) -> float | None:
        vals = [r[k] for r in rows if r.get(k) is not None]
        return round(statistics.median(vals), 2) if vals else None

    results["summary"] = {
        "file_to_rows_p50_s": p50(results["file"], "first_s"),
        "file_run_p50_s": p50(results["file"], "run_s"),
        "file_process_p50_s": p50(results["file"], "process_s"),
        "drain_to_applied_p50_s": p50(results["drain"], "first_s"),
        "drain_run_p50_s": p50(results["drain"], "run_s"),
        "drain_process_p50_s": p50(results["drain"], "process_s"),
        "quality_full_run_s": results["quality_full"].get("run_s"),
        "quality_scoped_run_s": results.get("quality_scoped", {}).get("run_s"),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}", file=sys.stderr)


SCOPED = """
import json, sys, time
import dagster as dg
from integration_assets.checks.scope import check_inputs, due_checks
from integration_assets.definitions import defs
instance = dg.DagsterInstance.get()
due = due_checks(instance, check_inputs(defs.asset_checks or []))
job = dg.define_asset_job("quality_scoped", selection=dg.AssetSelection.checks(*due), executor_def=dg.in_process_executor)
scoped = dg.Definitions(assets=list(defs.assets or []), asset_checks=list(defs.asset_checks or []), jobs=[job],
                        resources=defs.resources)
t = time.perf_counter()
res = scoped.resolve_job_def("quality_scoped").execute_in_process(instance=instance, raise_on_error=False)
print(json.dumps({"checks": len(due), "of": len(check_inputs(defs.asset_checks or [])), "run_s": round(time.perf_counter() - t, 2)}))
"""


def _scoped(env: dict[str, str], src: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", SCOPED], cwd=src, env=env, check=True, capture_output=True, text=True
    ).stdout
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": round(time.perf_counter() - t0, 2)}


if __name__ == "__main__":
    main()
