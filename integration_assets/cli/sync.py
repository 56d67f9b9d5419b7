"""``integration-assets sync``: run the file assets over everything waiting in the inbox, in-process.

Runs go to the Dagster instance in DAGSTER_HOME (default ``<data dir>/dagster``; passed to the runs, the
environment is left alone), so they show in the UI exactly like sensor-launched runs. Entities are loaded
parents first (orders before order lines).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from integration_assets.ingest.archive import tidy
from integration_assets.ingest.inbox import abandon_dead_loads, survey
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse.db import ensure_schema, get_engine
from integration_assets.warehouse.schema import loads

# Past the settle time by this much, so the file is surely settled when the inbox is read again.
_SETTLE_MARGIN_S = 0.2

ROW_FIELDS = (
    "rows_read",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_duplicate",
    "rows_quarantined",
)


@dataclass
class SyncResult:
    runs: list[dict[str, Any]] = field(default_factory=list)
    loads: list[dict[str, Any]] = field(default_factory=list)
    abandoned: list[str] = field(
        default_factory=list
    )  # running loads found dead at start and marked abandoned
    ignored: list[dict[str, Any]] = field(default_factory=list)  # temp names left alone for now (inbox rule)
    # Files younger than the settle time even after waiting for them (still being written): the next sync.
    not_settled: list[dict[str, Any]] = field(default_factory=list)
    inbox: str = ""

    @property
    def ok(self) -> bool:
        """The pipeline ran: every run finished, though a blocking check may have failed in it (README)."""
        return not any(r["crashed"] for r in self.runs)

    def per_entity(self) -> list[dict[str, Any]]:
        agg: dict[tuple[str, str], dict[str, Any]] = {}
        for ld in self.loads:
            key = (ld["source_system"], ld["entity"])
            a = agg.setdefault(
                key,
                {
                    "system": key[0],
                    "entity": key[1],
                    "files": 0,
                    "archived": 0,
                    "rejected": 0,
                    "duplicate_files": 0,
                    **{k: 0 for k in ROW_FIELDS},
                },
            )
            if ld["status"] == "already_loading":
                a.setdefault("already_loading", 0)
                a["already_loading"] += 1
                continue  # the file is the other process's: counted there
            a["files"] += 1
            a["archived"] += ld["status"] in ("succeeded", "duplicate_file")
            a["rejected"] += ld["status"] == "rejected"
            a["duplicate_files"] += ld["status"] == "duplicate_file"
            for k in ROW_FIELDS:
                a[k] += ld[k] or 0
        return list(agg.values())

    def as_dict(self) -> dict[str, Any]:
        totals: dict[str, int] = defaultdict(int)
        for e in self.per_entity():
            for k, v in e.items():
                if isinstance(v, int):
                    totals[k] += v
        out = {
            "ok": self.ok,
            "inbox": self.inbox,
            "runs": self.runs,
            "entities": self.per_entity(),
            "totals": dict(totals),
            "loads": self.loads,
        }
        if self.abandoned:
            out["abandoned"] = self.abandoned
        if self.ignored:
            out["ignored"] = self.ignored
        if self.not_settled:
            out["not_settled"] = self.not_settled
        return out


def dependency_order() -> list[tuple[str, str, str]]:
    """(system, entity, table) with referenced tables first."""
    # lazy: keeps pandas/pandera out of --help and of a sync of re-sent exports (only hashed), saves 1100 ms
    from integration_assets.contracts.spec import contracts_for, known_entities

    entities = known_entities()
    by_table = {t: (s, e, t) for s, e, t in entities}
    graph = {
        t: {ref.table for c in contracts_for(s, e) for ref in c.references.values()} & set(by_table)
        for s, e, t in entities
    }
    return [by_table[t] for t in TopologicalSorter(graph).static_order()]


def _known_folders() -> set[tuple[str, str]]:
    # lazy: keeps pandas/pandera out of --help and of a sync of re-sent exports (only hashed), saves 1100 ms
    from integration_assets.contracts.spec import known_entities

    return {(s, e) for s, e, _ in known_entities()}


def ensure_dagster_home(settings: Settings) -> Path:
    """The Dagster instance directory (``settings.dagster_home``), created with telemetry off if missing."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return home


def open_instance(settings: Settings) -> Any:
    """The Dagster instance (a ``dg.DagsterInstance``) in-process runs go to; the environment is left alone."""
    # lazy: keeps Dagster out of --help and of a sync with nothing to run, saves 1500 ms
    import dagster as dg

    return dg.DagsterInstance.from_config(str(ensure_dagster_home(settings)))


def wait_for_settling(settings: Settings, on_wait: Callable[[int, float], None] | None = None) -> None:
    """Wait until the files that just landed are older than the settle time (INTEGRATION_INBOX_SETTLE_SECONDS).

    Bounded by the settle time itself: a file that is still being written after that stays younger and is
    reported as not settled instead of waited for. ``on_wait(files, seconds)`` is told before the wait.
    """
    settling = survey(settings).settling
    if not settling:
        return
    now = time.time()
    seconds = min(
        max(settings.inbox_settle_seconds - (now - f.mtime) for f in settling) + _SETTLE_MARGIN_S,
        settings.inbox_settle_seconds + _SETTLE_MARGIN_S,
    )
    if seconds <= 0:
        return
    if on_wait is not None:
        on_wait(len(settling), seconds)
    time.sleep(seconds)


def run_pending(
    settings: Settings | None = None,
    log_level: str = "WARNING",
    *,
    wait_settle: bool = False,
    on_wait: Callable[[int, float], None] | None = None,
) -> SyncResult:
    """One in-process run per entity that has files waiting; returns what every load did.

    ``wait_settle``: first wait out the settle time of files that just landed (bounded, see
    :func:`wait_for_settling`), so a sync right after a drop loads them instead of skipping them."""
    settings = settings or get_settings()
    ensure_schema(settings.warehouse_url)
    result = SyncResult(inbox=str(settings.inbox_dir))
    if wait_settle:
        wait_for_settling(settings, on_wait)
    engine = get_engine(settings.warehouse_url)
    # Loads left 'running' by a process that died (kill -9, a lost container) are marked abandoned first, so
    # their files load again and the ledger says what happened.
    result.abandoned = abandon_dead_loads(engine, settings)
    # Refused entries and misplaced files are rejected, content already loaded (a re-sent export, even
    # renamed) is archived as a duplicate, without a run: as the tidy run the sensor requests.
    decision, moved = tidy(settings, engine, _known_folders)
    result.loads.extend(_jsonable(r.as_dict()) for r in moved)
    result.ignored = [
        {"file": str(f.path.relative_to(settings.inbox_dir)), "why": why}
        for f, why in decision.survey.ignored
    ]
    now = time.time()
    result.not_settled = [
        {"file": str(f.path.relative_to(settings.inbox_dir)), "age_s": round(max(now - f.mtime, 0.0), 1)}
        for f in decision.survey.settling
    ]
    by_entity: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f, _sha in decision.new:
        by_entity[(f.system, f.entity)].append(str(f.path))
    if not by_entity:
        return result
    # lazy: keeps Dagster and the file jobs out of --help and of a sync with nothing to run, saves 4220 ms
    from integration_assets.assets.files import ENTITY_TAG, job_name, raw_op_name
    from integration_assets.jobs.files import failed_blocking_checks, file_run_definitions, only_checks_failed

    defs = file_run_definitions()  # the code location's file jobs, without its sensors (see jobs/files.py)
    with open_instance(settings) as instance:
        for system, entity, _table in dependency_order():
            files = by_entity.get((system, entity))
            if not files:
                continue
            job = defs.resolve_job_def(job_name(system, entity))
            res = job.execute_in_process(
                instance=instance,
                run_config={
                    "ops": {raw_op_name(system, entity): {"config": {"files": files}}},
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
                tags={ENTITY_TAG: f"{system}.{entity}", "integration/trigger": "cli-sync"},
                raise_on_error=False,
            )
            checks = failed_blocking_checks(res)
            result.runs.append(
                {
                    "run_id": res.run_id,
                    "job": job.name,
                    "success": res.success,
                    "files": len(files),
                    "checks_failed": checks,
                    "crashed": not res.success and not only_checks_failed(res),
                }
            )
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(loads).where(loads.c.run_id == res.run_id).order_by(loads.c.started_at)
                )
                result.loads.extend(_jsonable(dict(r._mapping)) for r in rows)
    return result


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    if isinstance(out.get("drift"), str):
        out["drift"] = json.loads(out["drift"])
    return out


def render_summary(result: SyncResult, title: str = "Sync summary") -> None:
    console = Console(width=max(Console().width, 120))
    if not result.loads and not result.runs:
        # A table of zeros says nothing: say where the inbox is and what it holds.
        console.print(f"Nothing to load: no new files in the inbox {result.inbox}", highlight=False)
        console.print(
            "  drop exports in <inbox>/<system>/<entity>/ (integration-assets contracts list shows the folders)",
            highlight=False,
            markup=False,
        )
        _print_leftovers(console, result)
        return
    table = Table(title=f"{title} (inbox {result.inbox})", title_justify="left", min_width=110)
    for col in (
        "entity",
        "files",
        "read",
        "inserted",
        "updated",
        "unchanged",
        "duplicates",
        "quarantined",
        "archived",
        "rejected",
    ):
        table.add_column(col, justify="left" if col == "entity" else "right", no_wrap=col == "entity")
    totals: dict[str, int] = defaultdict(int)
    for e in result.per_entity():
        vals = [
            e["files"],
            e["rows_read"],
            e["rows_inserted"],
            e["rows_updated"],
            e["rows_unchanged"],
            e["rows_duplicate"],
            e["rows_quarantined"],
            e["archived"],
            e["rejected"],
        ]
        for i, v in enumerate(vals):
            totals[str(i)] += v
        table.add_row(f"{e['system']}/{e['entity']}", *map(str, vals))
    table.add_section()
    table.add_row("total", *(str(totals[str(i)]) for i in range(9)), style="bold")
    console.print(table)
    rejected = [ld for ld in result.loads if ld["status"] == "rejected"]
    for ld in rejected:
        console.print(
            f"[yellow]rejected[/] {ld['source_system']}/{ld['entity']}/{ld['file_name']}: {ld['error']}"
        )
    for ld in result.loads:
        if ld["status"] == "already_loading":
            console.print(
                f"[yellow]skipped[/] {ld['source_system']}/{ld['entity']}/{ld['file_name']}: {ld['error']}; "
                "that process archives it",
                highlight=False,
            )
    _print_leftovers(console, result)
    for r in result.runs:
        if r["crashed"]:
            console.print(f"[red]run failed[/] {r['job']} ({r['run_id']}); see the Dagster UI")
        elif r["checks_failed"]:
            console.print(
                f"[red]blocking check failed[/] {', '.join(r['checks_failed'])} in {r['job']} "
                f"({r['run_id']}): the load is committed, what depends on it in that run was skipped",
                highlight=False,
            )


def _print_leftovers(console: Console, result: SyncResult) -> None:
    """Files the sync left in the inbox on purpose, and why."""
    for entry in result.ignored:
        console.print(f"[dim]left in the inbox for now[/] {entry['file']}: {entry['why']}", highlight=False)
    for entry in result.not_settled:
        console.print(
            f"[yellow]not settled yet[/] {entry['file']}: changed {entry['age_s']} s ago, still being written? "
            "The next sync (or the sensor) loads it",
            highlight=False,
        )
    for load_id in result.abandoned:
        console.print(
            f"[yellow]abandoned[/] {load_id}: its process was gone; the file loads again", highlight=False
        )


@click.command("sync")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def sync(as_json: bool) -> None:
    """Load every file waiting in the inbox (same assets as the sensor), then print what happened.

    Exit code 0 when the pipeline ran, even if rows were quarantined, files rejected, a blocking check failed or
    a file was left to another process loading it; non-zero only when it could not run (warehouse unreachable:
    2, a run crashed: 1).
    """
    try:
        result = run_pending(
            wait_settle=True,
            on_wait=lambda n, s: click.echo(
                f"waiting {s:.1f} s for {n} file(s) that just landed to settle "
                "(INTEGRATION_INBOX_SETTLE_SECONDS)",
                err=True,
            ),
        )
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        # The driver's message names the host and the reason, never the password.
        click.echo(
            f"sync could not run: the warehouse is unreachable ({type(exc.orig or exc).__name__}: "
            f"{str(exc.orig or exc).strip().splitlines()[0][:300]})",
            err=True,
        )
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(result.as_dict(), default=str))
    else:
        render_summary(result)
    sys.exit(0 if result.ok else 1)
