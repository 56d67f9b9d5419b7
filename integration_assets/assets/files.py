"""File-driven assets: for every (system, entity) with a contract, a raw landing asset and its canonical table.

``raw/<system>/<entity>`` is the list of export files a run picks from the inbox (which files, their size,
hash and format): it copies nothing, the load reads a snapshot of each file; ``warehouse/<table>`` maps,
validates, quarantines and merges them, and reports what each load did.
"""

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

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
from integration_assets.warehouse.schema import CANONICAL_TABLES, loads

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


class SettleChecks(Protocol):
    """Evaluates the checks a run planned on ``tables`` but will not reach (``checks.inrun``), so a run that
    materializes nothing leaves them showing their latest real result, not "skipped"."""

    def __call__(
        self,
        context: dg.OpExecutionContext | dg.AssetExecutionContext,
        tables: Iterable[str],
        warehouse: WarehouseResource,
        *,
        planned_only: bool = ...,
    ) -> object: ...


def has_new_data(reports: list[LoadReport]) -> bool:
    """Whether a run's loads brought data: a file loaded with rows. Duplicates, rejected or skipped files and
    empty files do not count, so a source that stopped sending stays stale however often a run is started."""
    return any(r.status == "succeeded" and r.rows_read > 0 for r in reports)


def _loaded_lookup(warehouse: WarehouseResource) -> Callable[[str, str, str], bool]:
    """``(system, entity, sha) -> already loaded?`` from the loads ledger; when the warehouse cannot answer
    (down, not migrated yet) nothing counts as loaded and the load itself decides."""

    def loaded(system: str, entity: str, sha: str) -> bool:
        try:
            with warehouse.engine().connect() as conn:
                if not sa.inspect(conn).has_table(loads.name):
                    return False
                return inbox.already_loaded(conn, system, entity, sha) is not None
        except sa.exc.SQLAlchemyError:
            return False

    return loaded


def build_file_assets(
    system: str, entity: str, table: str, settle: SettleChecks | None = None
) -> list[dg.AssetsDefinition]:
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
        output_required=False,  # nothing picked: no materialization, so freshness keeps counting
    )
    def _raw(context: dg.AssetExecutionContext, config: LandingConfig, warehouse: WarehouseResource):  # type: ignore[no-untyped-def]
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
        copies: list[str] = []
        loaded = _loaded_lookup(warehouse)
        for f in candidates:
            try:
                sha = inbox.file_hash(f)
            except FileNotFoundError:
                continue
            if loaded(system, entity, sha):
                # A copy of content already loaded is no new data: the inbox sensor's tidy run archives it.
                copies.append(f.path.name)
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
        context.log.info(
            "picked %d file(s) for %s/%s (%d copies of loaded content left)",
            len(landed),
            system,
            entity,
            len(copies),
        )
        if not landed:
            context.log_event(
                dg.AssetObservation(
                    asset_key=raw_key(system, entity),
                    description="checked the inbox: no new file",
                    metadata={
                        "files": 0,
                        "folder": f"{system}/{entity}",
                        "already_loaded": dg.MetadataValue.json(copies),
                    },
                )
            )
            if settle is not None:
                settle(context, [table], warehouse, planned_only=True)
            return
        yield dg.Output(
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
        output_required=False,  # nothing new loaded: no materialization (see has_new_data)
    )
    def _canonical(  # type: ignore[no-untyped-def]
        context: dg.AssetExecutionContext, landed: list[dict[str, Any]], warehouse: WarehouseResource
    ):
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
        metadata = {
            "dagster/row_count": int(total),
            **deferred,
            **load_metadata(reports, time.perf_counter() - t0),
        }
        if has_new_data(reports) or deferred.get("deferred_children_replayed"):
            yield dg.MaterializeResult(metadata=metadata)
            return
        # Checked, nothing new: say so without a materialization (freshness must mean "data arrived"); the
        # checks this run planned are evaluated here against the latest materialization.
        context.log.info("nothing new loaded for %s: no materialization", table)
        context.log_event(
            dg.AssetObservation(
                asset_key=canonical_key(table), description="checked, nothing new loaded", metadata=metadata
            )
        )
        if settle is not None:
            settle(context, [table], warehouse, planned_only=True)

    return [_raw, _canonical]


def build_assets(settle: SettleChecks | None = None) -> list[dg.AssetsDefinition]:
    assets: list[dg.AssetsDefinition] = []
    for system, entity, table in known_entities():
        assets.extend(build_file_assets(system, entity, table, settle))
    return assets


def build_jobs(check_keys: Iterable[dg.AssetCheckKey]) -> list[Any]:
    """One ingest job per (system, entity): its raw and canonical assets plus every check of the canonical
    asset, so each materialization carries all its checks' evaluations (the UI shows a check evaluated
    against an older materialization as "Not Evaluated"). The run is one process: a 6-row file should not
    pay for a subprocess per step."""
    keys = list(check_keys)
    jobs = []
    for system, entity, table in known_entities():
        selection = dg.AssetSelection.assets(raw_key(system, entity), canonical_key(table)).without_checks()
        own = [k for k in keys if k.asset_key == canonical_key(table)]
        if own:
            selection = selection | dg.AssetSelection.checks(*own)
        jobs.append(
            dg.define_asset_job(
                job_name(system, entity),
                selection=selection,
                description=f"Land and load {system}/{entity} files from the inbox, then check the load.",
                tags={ENTITY_TAG: f"{system}.{entity}"},
                executor_def=dg.in_process_executor,
            )
        )
    return jobs
