"""File-driven assets: for every (system, entity) with a contract, a raw landing asset and its canonical table.

``raw/<system>/<entity>`` is the list of export files a run picks from the inbox (which files, their size,
hash and format): it copies nothing, the load reads a snapshot of each file; ``warehouse/<table>`` maps,
validates, quarantines and merges them, and reports what each load did.
"""

import random
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from integration_assets.contracts.spec import all_contracts, contracts_for, entity_slug, known_entities
from integration_assets.errors import TransientError
from integration_assets.ingest import inbox
from integration_assets.ingest.process import process
from integration_assets.ingest.replay import replay_deferred_references
from integration_assets.resources import WarehouseResource
from integration_assets.settings import get_settings
from integration_assets.warehouse.ledger import LoadReport
from integration_assets.warehouse.schema import CANONICAL_TABLES

OWNERS = ["team:data-integration"]


def retry_if_transient(context: dg.AssetExecutionContext, exc: Exception) -> None:
    """Transient failures (warehouse unreachable, lock timeouts) are retried with capped exponential backoff and
    jitter; anything else fails the step at once (bad input never reaches here: it is quarantined)."""
    if isinstance(exc, TransientError | sa.exc.OperationalError | sa.exc.InterfaceError):
        wait = min(120.0, 5.0 * 2**context.retry_number) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
        retries = get_settings().run_transient_retries
        raise dg.RetryRequested(max_retries=retries, seconds_to_wait=wait) from exc


ENTITY_TAG = "integration/entity"


class LandingConfig(dg.Config):
    """Which inbox files to load; empty means every settled file waiting in this entity's inbox folder."""

    files: list[str] = []


def raw_key(system: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", system, entity_slug(entity)])


def canonical_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["warehouse", table])


def job_name(system: str, entity: str) -> str:
    return f"ingest_{system}_{entity_slug(entity)}"


def raw_op_name(system: str, entity: str) -> str:
    return "__".join(raw_key(system, entity).path)


def _summary_markdown(reports: list[LoadReport]) -> str:
    lines = [
        "| file | status | read | inserted | updated | unchanged | duplicates | quarantined | contract |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        status = r.status if not r.error else f"{r.status}: {r.error[:120]}"
        lines.append(
            f"| {r.file_name} | {status} | {r.rows_read} | {r.rows_inserted} | {r.rows_updated} | "
            f"{r.rows_unchanged} | {r.rows_duplicate} | {r.rows_quarantined} | {r.contract or ''} |"
        )
    return "\n".join(lines)


def load_metadata(reports: list[LoadReport], seconds: float) -> dict[str, Any]:
    """Numeric metadata per materialization, so the asset's Plots tab shows each figure over time."""
    tot: dict[str, int] = defaultdict(int)
    for r in reports:
        for k in (
            "rows_read",
            "rows_inserted",
            "rows_updated",
            "rows_unchanged",
            "rows_duplicate",
            "rows_quarantined",
        ):
            tot[k] += getattr(r, k)
    drift = [d | {"file": r.file_name} for r in reports for d in r.drift]
    return {
        "files": len(reports),
        "files_loaded": sum(r.status == "succeeded" for r in reports),
        "files_rejected": sum(r.status == "rejected" for r in reports),
        "files_duplicate": sum(r.status == "duplicate_file" for r in reports),
        **{
            k: tot[k]
            for k in (
                "rows_read",
                "rows_inserted",
                "rows_updated",
                "rows_unchanged",
                "rows_duplicate",
                "rows_quarantined",
            )
        },
        "drift_findings": len(drift),
        "drift": dg.MetadataValue.json(drift),
        "load_ids": dg.MetadataValue.json([r.load_id for r in reports]),
        "loads": dg.MetadataValue.md(_summary_markdown(reports))
        if reports
        else dg.MetadataValue.text("no files"),
        "accounting_balanced": all(r.balanced for r in reports),
        "duration_s": round(seconds, 3),
    }


def referenced_tables() -> set[str]:
    """Tables that some contract references as a parent (e.g. sales_orders for order lines)."""
    return {ref.table for c in all_contracts() for ref in c.references.values()}


def build_file_assets(system: str, entity: str, table: str) -> list[dg.AssetsDefinition]:
    family = contracts_for(system, entity)
    versions = ", ".join(c.id for c in family)
    deps = sorted({canonical_key(ref.table) for c in family for ref in c.references.values()}, key=str)

    @dg.asset(
        key=raw_key(system, entity),
        group_name=system,
        owners=OWNERS,
        kinds={"file", system},
        description=f"The {system} {entity} export files a run picks from the inbox folder {system}/{entity}/ "
        f"(name, size, SHA-256, format): a list of what the load reads, not a copy. Contracts: {versions}.",
        op_tags={ENTITY_TAG: f"{system}.{entity}"},
    )
    def _raw(
        context: dg.AssetExecutionContext, config: LandingConfig, warehouse: WarehouseResource
    ) -> dg.Output[list[dict[str, Any]]]:
        settings = warehouse.settings()
        if config.files:
            candidates = []
            for p in map(Path, config.files):
                try:
                    st = p.lstat()
                except FileNotFoundError:
                    continue  # archived by another run or sync meanwhile
                candidates.append(inbox.InboxFile(p, system, entity, st.st_size, st.st_mtime))
        else:
            candidates = [f for f in inbox.scan(settings) if (f.system, f.entity) == (system, entity)]
        landed: list[dict[str, Any]] = []
        for f in candidates:
            try:
                sha = inbox.file_hash(f)
            except FileNotFoundError:
                continue
            landed.append(
                {
                    "path": str(f.path),
                    "name": f.path.name,
                    "bytes": f.size,
                    "sha256": sha,
                    "format": f.path.suffix.lstrip(".").lower(),
                }
            )
        context.log.info("picked %d file(s) for %s/%s", len(landed), system, entity)
        return dg.Output(
            landed,
            metadata={
                "files": len(landed),
                "bytes": sum(x["bytes"] for x in landed),
                "names": dg.MetadataValue.json([x["name"] for x in landed]),
            },
        )

    @dg.asset(
        key=canonical_key(table),
        group_name=system,
        owners=OWNERS,
        kinds={"sql", "pandas", "pandera"},
        ins={"landed": dg.AssetIn(raw_key(system, entity))},
        deps=deps,
        description=f"Canonical `{table}` rows from {system} {entity}, mapped by {versions}, validated with the "
        f"pandera model and merged on (source_system, source_id); bad rows go to dead_letters.",
        op_tags={ENTITY_TAG: f"{system}.{entity}"},
    )
    def _canonical(
        context: dg.AssetExecutionContext, landed: list[dict[str, Any]], warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        try:  # the warehouse may be down already: migrate (once per process) and clean up inside the retry
            warehouse.upgrade()
            settings, engine = warehouse.settings(), warehouse.engine()
            # Loads left running by a process that died are marked abandoned at every start (sync, sensor, run).
            for load_id in inbox.abandon_dead_loads(engine, settings):
                context.log.warning(
                    "load %s was left running by a process that is gone: marked abandoned", load_id
                )
        except Exception as exc:
            retry_if_transient(context, exc)
            raise
        t0 = time.perf_counter()
        reports = []
        for item in landed:
            p = Path(item["path"])
            try:
                f = inbox.InboxFile(p, system, entity, item["bytes"], p.stat().st_mtime)
                report = process(f, settings=settings, engine=engine, run_id=context.run_id)
            except FileNotFoundError:
                if p.exists():
                    raise  # something else is missing
                # Processed by another run or sync between landing and now: its ledger row accounts for it.
                context.log.info("%s already processed by another run; skipping", item["name"])
                continue
            except Exception as exc:
                retry_if_transient(context, exc)
                raise
            context.log.info(
                "%s: %s read=%d inserted=%d updated=%d unchanged=%d dup=%d quarantined=%d",
                item["name"],
                report.status,
                report.rows_read,
                report.rows_inserted,
                report.rows_updated,
                report.rows_unchanged,
                report.rows_duplicate,
                report.rows_quarantined,
            )
            reports.append(report)
        deferred: dict[str, Any] = {}
        if table in referenced_tables() and any(r.status == "succeeded" for r in reports):
            # Children quarantined because this parent was missing get their retry now (the "deferred" part).
            outcome = replay_deferred_references(
                table, who="auto:parent-loaded", run_id=context.run_id, settings=settings, engine=engine
            )
            deferred = {
                "deferred_children_replayed": len(outcome.replayed),
                "deferred_children_still_waiting": len(outcome.still_failing),
            }
            if outcome.replayed:
                context.log.info(
                    "replayed %d deferred child rows now that %s loaded", len(outcome.replayed), table
                )
        with engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(CANONICAL_TABLES[table])).scalar_one()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": int(total),
                **deferred,
                **load_metadata(reports, time.perf_counter() - t0),
            }
        )

    return [_raw, _canonical]


# Checks that judge a load itself run inside the ingest run (keys is blocking there); the expensive,
# whole-table ones (Great Expectations, cross-system reconciliation) run in the scheduled quality job.
IN_LOAD_CHECKS = frozenset(
    {"volume", "quarantine_rate", "dead_letter_backlog", "drift", "keys", "referential_integrity"}
)


def build_assets() -> list[dg.AssetsDefinition]:
    assets: list[dg.AssetsDefinition] = []
    for system, entity, table in known_entities():
        assets.extend(build_file_assets(system, entity, table))
    return assets


def build_jobs(check_keys: Iterable[dg.AssetCheckKey]) -> list[Any]:
    """One ingest job per (system, entity): its raw and canonical assets plus the in-load checks."""
    keys = list(check_keys)
    jobs = []
    for system, entity, table in known_entities():
        selection = dg.AssetSelection.assets(raw_key(system, entity), canonical_key(table)).without_checks()
        in_load = [k for k in keys if k.asset_key == canonical_key(table) and k.name in IN_LOAD_CHECKS]
        if in_load:
            selection = selection | dg.AssetSelection.checks(*in_load)
        jobs.append(
            dg.define_asset_job(
                job_name(system, entity),
                selection=selection,
                description=f"Land and load {system}/{entity} files from the inbox, then check the load.",
                tags={ENTITY_TAG: f"{system}.{entity}"},
            )
        )
    return jobs
