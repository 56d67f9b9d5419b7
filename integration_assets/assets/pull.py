"""Daily partitions on the API pulls: ``api/<system>/<entity>``, one partition per UTC day (issue 13).

A partition run pulls the records modified in its window ``[day 00:00, next day 00:00)`` UTC
(:func:`~integration_assets.connectors.landing.pull_window`: HubSpot's CRM search on the modified date, split
when it passes the 10,000-result cap; Odoo's ``write_date`` domain), lands them as one JSONL file named with the
partition key in the entity's inbox folder, and loads that file in the same run through the ingest path
(``ingest.process``, the ledger row carrying the partition key). The inbox sensor then finds the file archived
and its content loaded. The partitions start at ``partitions.start`` of policies.yaml (per source override) and
today's partition exists (``end_offset=1``).

A run may take a range of partitions (``BackfillPolicy.multi_run``: ``partitions.max_partitions_per_run``); it
pulls and loads day by day and records **one materialization per day with that day's counts** (records
pulled, outside the window, rows inserted / updated / unchanged / quarantined), so a re-run of an unchanged
day shows 0 rows written. A day with nothing modified still materializes: the partition was checked. A day
that fails fails the run; the days before it stay materialized, the failed one and the rest are retried by
the next run or backfill (nothing of a failed day is landed: its file is written only once its pull
completed, and each load is one transaction).

A run of a backfill, or a re-run of a day that already materialized, loads the day's file with ``force``
(``ingest.process``): bytes identical to an earlier load are mapped again under the current contract and the
merge lets them win a tie at the same ``source_updated_at``, so a contract fixed since corrects the day's
rows (updated, not duplicated) while an unchanged day still writes 0 rows. A first pull of a day does not
force: content already loaded through the inbox stays a counted duplicate.

Every request goes through the shared API budget (``warehouse/api_budget.py``) at the run's priority: a run of
a backfill (Dagster's ``dagster/backfill`` tag) is ``backfill``, a scheduled run ``live``.

The canonical asset ``warehouse/<table>`` lists ``api/<system>/<entity>`` as an upstream (definitions.py) and
gets a materialization event when a partition run wrote rows to it (inserted or updated), none otherwise, so
its freshness means "data arrived" as for file loads.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import sqlalchemy as sa

from integration_assets.assets.files import (
    ENTITY_TAG,
    OWNERS,
    canonical_key,
    referenced_tables,
)
from integration_assets.checks.inrun import evaluate_checks
from integration_assets.connectors.hubspot.client import OBJECT_TYPES
from integration_assets.connectors.landing import WindowReport, pull_window
from integration_assets.connectors.odoo.client import MODELS
from integration_assets.contracts.spec import contracts_for, entity_slug, known_entities
from integration_assets.errors import TerminalError, TransientError
from integration_assets.ingest import inbox
from integration_assets.ingest.process import process
from integration_assets.ingest.replay import replay_deferred_references
from integration_assets.observability.logging import correlation
from integration_assets.policies import Policies, load_policies
from integration_assets.quality.connector_health import warehouse_status_recorder
from integration_assets.resources import WarehouseResource
from integration_assets.warehouse import ledger
from integration_assets.warehouse.api_budget import api_budget_for, priority_from_tags
from integration_assets.warehouse.ledger import LoadReport
from integration_assets.warehouse.schema import CANONICAL_TABLES

if TYPE_CHECKING:  # what define_asset_job returns (not exported by dagster's top level)
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )

__all__ = [
    "API_TABLES",
    "FILE_PULLS",
    "PARTITIONED_ASSETS",
    "PULL_JOBS",
    "SOURCE_JOBS",
    "api_key",
    "build_partitioned_assets",
    "build_partition_jobs",
    "parents_of",
    "partition_job_name",
    "partitioned_assets",
    "partitions_def_for",
    "source_job_name",
]

# The systems with a partitioned pull, their entities (load order) and the resource and pool of their API.
SYSTEMS: dict[str, tuple[str, ...]] = {"hubspot": OBJECT_TYPES, "odoo": MODELS}
RESOURCE_KEYS = {"hubspot": "hubspot", "odoo": "odoo"}
POOLS = {"hubspot": "hubspot_api", "odoo": "odoo_api"}
_TABLES = {(s, e): t for s, e, t in known_entities()}


def api_key(system: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey(["api", system, entity_slug(entity)])


# (system, entity) -> the partitioned pull assets built here (a JSONL file per day, loaded); entity as the
# contracts name it (``sale.order``).
FILE_PULLS: dict[tuple[str, str], dg.AssetKey] = {
    (system, entity): api_key(system, entity) for system, entities in SYSTEMS.items() for entity in entities
}
# Stripe's events pull (assets/stripe_pull.py: it applies events, lands no file) is partitioned the same way.
# Named here, not imported: that module imports jobs/pull.py, which imports this one.
STRIPE_EVENTS = ("stripe", "events")

# (system, entity) -> every daily-partitioned pull asset (what the backfill CLI and partition health cover).
PARTITIONED_ASSETS: dict[tuple[str, str], dg.AssetKey] = {
    **FILE_PULLS,
    STRIPE_EVENTS: api_key(*STRIPE_EVENTS),
}

# (system, entity) -> the canonical table its pulled records load into (file pulls; Stripe's events feed
# warehouse/payments through the events path, wired in definitions.py).
API_TABLES: dict[tuple[str, str], str] = {k: _TABLES[k] for k in FILE_PULLS}


def partition_job_name(system: str, entity: str) -> str:
    """The job of one partitioned pull asset (what a backfill of that asset launches)."""
    return f"api_{system}_{entity_slug(entity)}"


def source_job_name(system: str) -> str:
    """The job of every partitioned pull asset of ``system`` (what the schedule runs)."""
    return f"api_{system}"


PULL_JOBS: dict[tuple[str, str], str] = {k: partition_job_name(*k) for k in PARTITIONED_ASSETS}
SOURCE_JOBS: dict[str, str] = {system: source_job_name(system) for system in SYSTEMS}


def partitioned_assets(system: str) -> list[dg.AssetKey]:
    return [key for (s, _), key in PARTITIONED_ASSETS.items() if s == system]


def partitions_def_for(system: str, policies: Policies | None = None) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from the source's ``partitions.start``; today's partition included."""
    start = (policies or load_policies()).partitions.start_for(system)
    return dg.DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone="UTC", end_offset=1)


def parents_of(system: str, entities: tuple[str, ...]) -> dict[str, list[str]]:
    """Entity -> entities of the same system its contracts reference (sale.order.line -> sale.order)."""
    table_of = {e: c.target for e in entities for c in contracts_for(system, e)}
    entity_of = {t: e for e, t in table_of.items()}
    return {
        e: sorted(
            {
                entity_of[r.table]
                for c in contracts_for(system, e)
                for r in c.references.values()
                if r.table in entity_of and entity_of[r.table] != e
            }
        )
        for e in entities
    }


def _day_metadata(pulled: WindowReport, load: LoadReport | None, splits: int) -> dict[str, Any]:
    written = (load.rows_inserted + load.rows_updated) if load is not None else 0
    return {
        "window_start": pulled.start,
        "window_end": pulled.end,
        "records_pulled": pulled.pulled,
        "records_outside_window": pulled.outside,
        "records_landed": pulled.records,
        "pages": pulled.pages,
        "search_splits": splits,
        "file": Path(pulled.file).name if pulled.file else "",
        "load_id": load.load_id if load is not None else "",
        "load_status": load.status if load is not None else "nothing modified",
        "rows_read": load.rows_read if load is not None else 0,
        "rows_inserted": load.rows_inserted if load is not None else 0,
        "rows_updated": load.rows_updated if load is not None else 0,
        "rows_unchanged": load.rows_unchanged if load is not None else 0,
        "rows_duplicate": load.rows_duplicate if load is not None else 0,
        "rows_quarantined": load.rows_quarantined if load is not None else 0,
        "rows_written": written,
        "duration_s": pulled.seconds,
    }


def _failure(system: str, entity: str, key: str, exc: Exception) -> dg.Failure:
    kind = "terminal" if isinstance(exc, TerminalError) else "transient"
    advice = (
        "fix before re-running" if kind == "terminal" else "a retry or backfill of the partition completes it"
    )
    return dg.Failure(
        description=f"{system}/{entity} partition {key} failed ({kind}; {advice}): {exc}",
        metadata={"kind": kind, "error": type(exc).__name__, "partition": key},
        allow_retries=kind == "transient",
    )


def build_partitioned_asset(system: str, entity: str, policies: Policies) -> dg.AssetsDefinition:
    table = _TABLES[(system, entity)]
    resource_key = RESOURCE_KEYS[system]
    partitions_def = partitions_def_for(system, policies)
    window = policies.for_entity(system, entity).freshness
    parents = parents_of(system, SYSTEMS[system])[entity]

    @dg.asset(
        key=api_key(system, entity),
        group_name=f"api_{system}",
        owners=OWNERS,
        kinds={"api", system},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.multi_run(
            max_partitions_per_run=policies.partitions.max_partitions_per_run
        ),
        deps=[api_key(system, p) for p in parents],
        pool=POOLS[system],
        required_resource_keys={resource_key, "warehouse"},
        op_tags={ENTITY_TAG: f"{system}.{entity}", "integration/kind": "pull"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=window.fail, warn_window=window.warn),
        output_required=False,  # one materialization per day is logged instead (each with its own counts)
        description=f"{system} {entity} modified on the partition's UTC day, pulled through the API, landed as "
        f"JSONL in the inbox folder {system}/{entity}/ and loaded into `{table}` in the same run.",
    )
    def _api(context: dg.AssetExecutionContext) -> Iterator[Any]:
        warehouse: WarehouseResource = context.resources.warehouse
        warehouse.upgrade()
        settings, engine = warehouse.settings(), warehouse.engine()
        for load_id in inbox.abandon_dead_loads(engine, settings):
            context.log.warning(
                "load %s was left running by a process that is gone: marked abandoned", load_id
            )
        priority = priority_from_tags(context.run.tags)
        budget = api_budget_for(engine, system)
        source = getattr(context.resources, resource_key).client(
            recorder=warehouse_status_recorder(system, engine)
        )
        source.http.use_api_budget(budget, priority)
        # A backfill, or a run of a day that already materialized, loads its file even when a load of the same
        # bytes succeeded before: the records did not change at the source, but the contract may have (a fixed
        # value map). The forced merge rewrites what maps differently now and leaves the rest unchanged.
        backfill = "dagster/backfill" in context.run.tags
        done = set() if backfill else context.instance.get_materialized_partitions(context.asset_key)
        written = 0
        used: dict[str, float | int] = {}
        try:
            for key in context.partition_keys:
                tw = partitions_def.time_window_for_partition_key(key)
                with correlation(run_id=context.run_id, source_system=system, entity=entity):
                    splits_before = getattr(source, "window_splits", 0)
                    try:
                        pulled = pull_window(
                            source, entity, key, tw.start, tw.end, inbox_dir=settings.inbox_dir
                        )
                        load = None
                        if pulled.file is not None:
                            path = Path(pulled.file)
                            st = path.stat()
                            with ledger.partition_scope(key):
                                load = process(
                                    inbox.InboxFile(path, system, entity, st.st_size, st.st_mtime),
                                    settings=settings,
                                    engine=engine,
                                    run_id=context.run_id,
                                    force=backfill or key in done,
                                )
                    except (TerminalError, TransientError) as exc:
                        raise _failure(system, entity, key, exc) from exc
                    except FileNotFoundError as exc:  # another load (the inbox sensor's) took the file first
                        raise _failure(
                            system,
                            entity,
                            key,
                            TransientError(f"the landed file was taken by another load: {exc}"),
                        ) from exc
                    except sa.exc.OperationalError as exc:  # the warehouse went away: transient
                        raise _failure(system, entity, key, TransientError(type(exc).__name__)) from exc
                    if load is not None and load.status == "rejected":
                        # The file is in rejected/ with its reason (a dead letter): nothing of the day loaded.
                        raise _failure(system, entity, key, TerminalError(f"file rejected: {load.error}"))
                metadata = _day_metadata(pulled, load, getattr(source, "window_splits", 0) - splits_before)
                metadata["load_forced"] = backfill or key in done
                if budget is not None:  # this day's share of the run's budget use
                    now_used = budget.stats().as_metadata()
                    metadata |= {k: round(v - used.get(k, 0), 3) for k, v in now_used.items()}
                    used = now_used
                    metadata["api_budget_priority"] = priority
                context.log.info(
                    "%s/%s %s: pulled %d (outside the window %d), inserted %d, updated %d, unchanged %d, "
                    "quarantined %d",
                    system,
                    entity,
                    key,
                    pulled.pulled,
                    pulled.outside,
                    metadata["rows_inserted"],
                    metadata["rows_updated"],
                    metadata["rows_unchanged"],
                    metadata["rows_quarantined"],
                )
                context.log_event(
                    dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=metadata)
                )
                written += int(metadata["rows_written"])
        finally:
            source.close()
        if written:
            _after_rows_written(context, table, written, warehouse)
        yield from ()  # every materialization was logged above, one per day

    return _api


def _after_rows_written(
    context: dg.AssetExecutionContext, table: str, written: int, warehouse: WarehouseResource
) -> None:
    """Rows reached the canonical table: children waiting for this parent get their retry (as after a file
    load), and ``warehouse/<table>`` is materialized (its freshness counts data that arrived)."""
    settings, engine = warehouse.settings(), warehouse.engine()
    extra: dict[str, Any] = {}
    if table in referenced_tables():
        outcome = replay_deferred_references(
            table, who="auto:parent-loaded", run_id=context.run_id, settings=settings, engine=engine
        )
        extra = {
            "deferred_children_replayed": len(outcome.replayed),
            "deferred_children_still_waiting": len(outcome.still_failing),
        }
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(CANONICAL_TABLES[table])).scalar_one()
    context.log_event(
        dg.AssetMaterialization(
            asset_key=canonical_key(table),
            description=f"rows written by the partition pull {context.asset_key.to_user_string()}",
            metadata={
                "dagster/row_count": int(total),
                "rows_written": written,
                "partitions": dg.MetadataValue.json(list(context.partition_keys)),
                **extra,
            },
        )
    )
    # Every materialization carries its checks' evaluations, whichever path wrote it (checks.inrun).
    evaluate_checks(context, [table], warehouse)


def build_partitioned_assets(policies: Policies | None = None) -> list[dg.AssetsDefinition]:
    policies = policies or load_policies()
    return [build_partitioned_asset(s, e, policies) for (s, e) in FILE_PULLS]


def build_partition_jobs(policies: Policies | None = None) -> "dict[str, AssetJob]":
    """One job per partitioned asset (``partition_job_name``) and one per source (``source_job_name``), in one
    process each: a partition run is API calls and one load, not worth a subprocess per step."""
    policies = policies or load_policies()
    jobs: dict[str, AssetJob] = {}
    for system, entities in SYSTEMS.items():
        pdef = partitions_def_for(system, policies)
        for entity in entities:
            name = partition_job_name(system, entity)
            jobs[name] = dg.define_asset_job(
                name,
                selection=dg.AssetSelection.assets(api_key(system, entity)),
                partitions_def=pdef,
                description=f"Pull and load {system}/{entity} for the partitions' UTC days.",
                tags={ENTITY_TAG: f"{system}.{entity}", "integration/kind": "pull"},
                executor_def=dg.in_process_executor,
            )
        name = source_job_name(system)
        jobs[name] = dg.define_asset_job(
            name,
            selection=dg.AssetSelection.assets(*partitioned_assets(system)),
            partitions_def=pdef,
            description=f"Pull and load every {system} entity for the partitions' UTC days (parents first).",
            tags={"integration/kind": "pull"},
            executor_def=dg.in_process_executor,
        )
    return jobs


def window_of(system: str, partition_key: str, policies: Policies | None = None) -> tuple[datetime, datetime]:
    """The half-open UTC window ``[start, end)`` of one partition."""
    tw = partitions_def_for(system, policies).time_window_for_partition_key(partition_key)
    return tw.start, tw.end
