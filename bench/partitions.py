"""Per-partition overhead (issue 13): what a Dagster run costs per daily partition of an API pull, and a 90-day
backfill on unchanged data — how much of it is API calls and how much is Dagster and the load around them.

In a temporary directory: the fake HubSpot over real HTTP (``--latency-ms`` per answer, 30 ms like the budget
benchmark), ``--per-day`` companies modified on each of 90 days, a SQLite warehouse and a Dagster instance whose
runs are launched at once and executed in this process (DefaultRunCoordinator, SyncInMemoryRunLauncher), so a
run's time is the run itself, without the daemon's 30-s interval or a run worker's interpreter start. Backfills
are launched through GraphQL ``launchPartitionBackfill`` (what the UI and ``integration-assets backfill`` call)
and run by the backfill daemon's iteration, under the assets' ``BackfillPolicy.multi_run``.

- single: one run per partition of unchanged days (the schedule's shape): run duration (RUN_START → RUN_SUCCESS
  in the event log), the API time inside it (the pull's ``duration_s`` metadata: requests, paging, budget waits)
  and the rest (Dagster's run and step machinery, landing and loading the file, materialization events);
- backfill: the 90 days once to fill the warehouse, then again on unchanged data: wall time, runs, API time.

A run worker process (what ``dagster-daemon`` launches per run) adds its interpreter and code-location start on
top of each run; docs/BENCHMARKS.md "Issue 14: small runs" measures that separately.

    .venv/bin/python bench/partitions.py                 # 90 days x 20 companies, 5 single runs
    .venv/bin/python bench/partitions.py --days 20 --per-day 5 --singles 2   # smoke check
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

START = date(2026, 9, 1)  # partitions.start in policies.yaml
LAUNCHER = (
    "telemetry: {enabled: false}\n"
    "run_coordinator:\n"
    "  module: dagster._core.run_coordinator.default_run_coordinator\n"
    "  class: DefaultRunCoordinator\n"
    "run_launcher:\n"
    "  module: dagster._core.launcher.sync_in_memory_run_launcher\n"
    "  class: SyncInMemoryRunLauncher\n"
)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _run_times(instance: Any, run_ids: list[str]) -> tuple[float, float]:
    """(sum of run durations, sum of the pulls' API seconds) over these runs."""
    import dagster as dg

    total = api = 0.0
    for run_id in run_ids:
        stats = instance.get_run_stats(run_id)
        total += (stats.end_time or 0.0) - (stats.start_time or 0.0)
        for rec in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records:
            mat = rec.event_log_entry.asset_materialization
            if mat is not None and mat.asset_key.path[0] == "api":
                api += float(mat.metadata["duration_s"].value)  # type: ignore[arg-type]
    return total, api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--per-day", type=int, default=20)
    ap.add_argument("--singles", type=int, default=5, help="single-partition runs measured")
    ap.add_argument("--latency-ms", type=float, default=30.0)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-partitions-"))
    home = work / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(LAUNCHER, encoding="utf-8")
    # Settings are read from the environment: set before the project is imported.
    os.environ.update(
        DAGSTER_HOME=str(home),
        INTEGRATION_DATA_DIR=str(work / "data"),
        INTEGRATION_WAREHOUSE_URL=f"sqlite:///{work / 'warehouse.db'}",
        INTEGRATION_INBOX_SETTLE_SECONDS="0",
    )
    from integration_assets.sandbox.fakes.hubspot import FakeHubSpot

    fake = FakeHubSpot()
    fake.latency = args.latency_ms / 1000
    fake.start()
    os.environ.update(HUBSPOT_ACCESS_TOKEN=fake.token, HUBSPOT_BASE_URL=fake.url)

    import dagster as dg

    from integration_assets.assets.pull import partition_job_name
    from integration_assets.sensors import partitions as p
    from integration_assets.warehouse import db

    db.upgrade(os.environ["INTEGRATION_WAREHOUSE_URL"])
    days = [START + timedelta(days=i) for i in range(args.days)]
    for n, day in enumerate(days):
        t0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for i in range(args.per_day):
            fake.add(
                "companies",
                {"name": f"Company {n}-{i}", "domain": f"c{n}-{i}.example.com", "country": "Germany"},
                modified=t0 + timedelta(minutes=10 * i + 1),
            )
    system, entity, key = p.resolve("hubspot", "companies")
    keys = p.partition_range(system, days[0], days[-1])
    print(
        f"## per-partition overhead: {args.days} days x {args.per_day} companies, {args.latency_ms:g} ms latency"
    )

    with dg.DagsterInstance.from_config(str(home)) as instance, p.workspace_for(instance) as process:

        def backfill(label: str) -> None:
            fake.requests.clear()
            t0 = time.perf_counter()
            bid = p.launch_backfill(process, key, keys, title=label)
            while p.backfill_status(instance, bid) == "REQUESTED":
                p.run_backfills_once(process)
            wall = time.perf_counter() - t0
            runs = [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": bid}))]
            total, api = _run_times(instance, runs)
            print(
                f"| backfill, {label} | {len(keys)} partitions | {len(runs)} runs | wall {wall:.1f} s | "
                f"runs {total:.1f} s | API {api:.1f} s ({len(fake.requests)} requests) | "
                f"other {total - api:.1f} s = {(total - api) / len(keys) * 1000:.0f} ms/partition |"
            )

        log("first backfill (fills the warehouse)")
        backfill("first load")
        log("second backfill on unchanged data")
        backfill("unchanged data")

        from integration_assets.definitions import defs

        job = defs.resolve_job_def(partition_job_name(system, entity))
        durations, apis = [], []
        for key_ in keys[: args.singles]:
            res = job.execute_in_process(instance=instance, partition_key=key_)
            total, api = _run_times(instance, [res.run_id])
            durations.append(total)
            apis.append(api)
        d, a = statistics.median(durations), statistics.median(apis)
        print(
            f"| one run per partition (median of {len(durations)}) | run {d * 1000:.0f} ms | "
            f"API {a * 1000:.0f} ms | other {(d - a) * 1000:.0f} ms |"
        )
    fake.stop()


if __name__ == "__main__":
    main()
