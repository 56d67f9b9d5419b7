"""Pull jobs: the HubSpot and Odoo APIs → JSONL files in the inbox, which the ``inbox_sensor`` then loads.

``pull_hubspot`` and ``pull_odoo`` run one op per entity (``pull_<system>__<entity>``), each calling
:func:`integration_assets.connectors.landing.pull_entity`: incremental from the entity's cursor, a full pull the
first time. Ops of one system share a pool (``hubspot_api``, ``odoo_api``): runs launched together (a schedule
tick, a manual launch) cannot exceed the provider's rate limit once the pool has a limit
(``dagster instance concurrency set hubspot_api 1``, or ``concurrency.pools`` in dagster.yaml). Within a run,
an entity whose contract references another of the same system waits for it (order lines after orders), so
files land in the order they load best.

Failures are not retried by Dagster: the connector already retried transient errors within the run's retry
budget (retrying at a second layer multiplies calls), and the next schedule tick resumes from the cursor.
The failure says which kind it was (``kind`` metadata: transient or terminal).

The schedules are STOPPED by default: they need credentials (HUBSPOT_ACCESS_TOKEN; ODOO_URL, ODOO_DB,
ODOO_USERNAME, ODOO_API_KEY), read through ``dg.EnvVar`` when a run starts.

The daily partitions of the same APIs (``assets/pull.py``, jobs ``api_<system>`` and ``api_<system>_<entity>``)
have their schedules here: ``api_<system>_schedule`` runs today's partition and ``partitions.late_edits``
previous days on each tick, and the days of the last week that never ran (Dagster 1.13 does not catch up a
schedule's missed ticks itself). They run by default when the source's credentials are set (the sandbox sets
the fakes' ones), and stay STOPPED otherwise.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg
import httpx

from integration_assets.assets.files import ENTITY_TAG, raw_key
from integration_assets.assets.pull import (
    SOURCE_JOBS,
    build_partition_jobs,
    build_partitioned_assets,
    parents_of,
    partitioned_assets,
    partitions_def_for,
)
from integration_assets.connectors._http import StatusRecorder
from integration_assets.connectors._retry import RetryBudget
from integration_assets.connectors.hubspot.client import DEFAULT_BASE_URL, OBJECT_TYPES, HubSpotClient
from integration_assets.connectors.landing import RECORDS_PER_FILE, PullReport, Source, pull_entity
from integration_assets.connectors.odoo.client import MODELS, OdooClient
from integration_assets.contracts.spec import entity_slug
from integration_assets.errors import TerminalError, TransientError
from integration_assets.observability.logging import correlation
from integration_assets.policies import Policies, load_policies
from integration_assets.quality.connector_health import warehouse_status_recorder
from integration_assets.resources import WarehouseResource
from integration_assets.settings import Settings, env, get_settings
from integration_assets.warehouse.api_budget import api_budget_for, priority_from_tags

if TYPE_CHECKING:
    from integration_assets.assets.pull import AssetJob

__all__ = [
    "HubSpotResource",
    "OdooResource",
    "PullConfig",
    "build_partition_schedule",
    "build_pull_job",
    "partitions_def_for",
    "pull_definitions",
    "scheduled_partition_keys",
    "source_configured",
]


class HubSpotResource(dg.ConfigurableResource):
    """HubSpot CRM v3 API access: a private-app token (HUBSPOT_ACCESS_TOKEN, a secret) and the base URL."""

    access_token: str
    base_url: str = DEFAULT_BASE_URL
    timeout_seconds: float = 30.0
    retry_budget: int = 100  # retries one op may spend across its calls

    def client(self, recorder: StatusRecorder | None = None) -> HubSpotClient:
        return HubSpotClient(
            self.access_token,
            self.base_url,
            recorder=recorder,
            timeout=httpx.Timeout(self.timeout_seconds, connect=min(10.0, self.timeout_seconds)),
            budget=RetryBudget(self.retry_budget),
        )


class OdooResource(dg.ConfigurableResource):
    """Odoo JSON-RPC access: URL, database, login and API key (ODOO_API_KEY, a secret)."""

    url: str
    db: str
    username: str
    api_key: str
    timeout_seconds: float = 60.0
    retry_budget: int = 100
    page_size: int = 500

    def client(self, recorder: StatusRecorder | None = None) -> OdooClient:
        return OdooClient(
            self.url,
            self.db,
            self.username,
            self.api_key,
            recorder=recorder,
            timeout=httpx.Timeout(self.timeout_seconds, connect=min(10.0, self.timeout_seconds)),
            budget=RetryBudget(self.retry_budget),
            page_size=self.page_size,
        )


class PullConfig(dg.Config):
    """Override where a pull starts. Default: from the entity's cursor (a full pull the first time)."""

    since: str | None = None  # ISO-8601; records modified at or after it (a backfill)
    full: bool = False  # every record, ignoring the cursor
    records_per_file: int = RECORDS_PER_FILE


def parse_since(text: str | None) -> datetime | None:
    if not text:
        return None
    ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def op_name(system: str, entity: str) -> str:
    return f"pull_{system}__{entity_slug(entity)}"


def run_pull(
    context: dg.OpExecutionContext,
    config: PullConfig,
    source_factory: Callable[[StatusRecorder], Any],
    system: str,
    entity: str,
) -> PullReport:
    """The body of a pull op: pull one entity, say in the run's log and metadata what landed."""
    warehouse: WarehouseResource = context.resources.warehouse
    recorder = warehouse_status_recorder(system, warehouse.engine())
    # Every request asks the shared API budget at the run's priority (a backfill's runs: "backfill").
    budget = api_budget_for(warehouse.engine(), system)
    priority = priority_from_tags(context.run.tags)
    with correlation(run_id=context.run_id, source_system=system, entity=entity):
        try:
            source: Source = source_factory(recorder)
            source.http.use_api_budget(budget, priority)  # type: ignore[attr-defined]
            try:
                report = pull_entity(
                    source,
                    entity,
                    inbox_dir=warehouse.settings().inbox_dir,
                    since=parse_since(config.since),
                    full=config.full,
                    records_per_file=config.records_per_file,
                )
            finally:
                source.close()  # type: ignore[attr-defined]
        except TerminalError as exc:
            raise dg.Failure(
                description=f"{system}/{entity} pull failed (terminal, fix before re-running): {exc}",
                metadata={"kind": "terminal", "error": type(exc).__name__},
                allow_retries=False,
            ) from exc
        except TransientError as exc:
            raise dg.Failure(
                description=f"{system}/{entity} pull failed (transient; the next run resumes from the "
                f"cursor): {exc}",
                metadata={"kind": "transient", "error": type(exc).__name__},
            ) from exc
    metadata: dict[str, Any] = {
        "mode": report.mode,
        "records": report.records,
        "skipped_already_landed": report.skipped,
        "pages": report.pages,
        "files": len(report.files),
        "since": report.since or "",
        "watermark_before": report.watermark_before or "",
        "watermark_after": report.watermark_after or "",
        "file_names": dg.MetadataValue.json([f.rsplit("/", 1)[-1] for f in report.files]),
        "duration_s": report.seconds,
    }
    if budget is not None:  # requests, waits, seconds waited and 429s of this op
        metadata |= budget.stats().as_metadata()
        metadata["api_budget_priority"] = priority
    context.log.info(
        "%s/%s: %s pull landed %d record(s) in %d file(s)",
        system,
        entity,
        report.mode,
        report.records,
        len(report.files),
    )
    # Shown on raw/<system>/<entity>: what the API delivered, before the inbox_sensor loads it.
    context.log_event(dg.AssetObservation(asset_key=raw_key(system, entity), metadata=metadata))
    context.add_output_metadata(metadata)
    return report


def build_pull_job(
    system: str, entities: tuple[str, ...], resource_key: str, pool: str, description: str
) -> dg.JobDefinition:
    """``pull_<system>``: one op per entity in ``pool``, parents before the entities that reference them."""
    parents = parents_of(system, entities)

    def make_op(entity: str) -> dg.OpDefinition:
        def pull_op(context: dg.OpExecutionContext, config: PullConfig) -> None:
            resource = getattr(context.resources, resource_key)
            run_pull(context, config, lambda rec: resource.client(recorder=rec), system, entity)

        return dg.op(
            name=op_name(system, entity),
            pool=pool,
            ins={"after": dg.In(dg.Nothing)} if parents[entity] else None,
            out=dg.Out(dg.Nothing),
            required_resource_keys={resource_key, "warehouse"},
            tags={ENTITY_TAG: f"{system}.{entity}", "integration/kind": "pull"},
            description=f"Pull {system} {entity} through the API into the inbox folder {system}/{entity}/ as JSONL "
            f"(incremental from the cursor).",
        )(pull_op)

    ops = {entity: make_op(entity) for entity in entities}

    @dg.graph(name=f"pull_{system}", description=description)
    def pull_graph() -> None:
        done: dict[str, Any] = {}
        for entity in entities:
            deps = [done[p] for p in parents[entity] if p in done]
            done[entity] = ops[entity](after=deps) if deps else ops[entity]()

    return pull_graph.to_job(tags={"integration/kind": "pull"})


pull_hubspot = build_pull_job(
    "hubspot",
    OBJECT_TYPES,
    "hubspot",
    "hubspot_api",
    "Pull HubSpot companies, contacts and deals (CRM v3 list/search) into the inbox as JSONL.",
)
pull_odoo = build_pull_job(
    "odoo",
    MODELS,
    "odoo",
    "odoo_api",
    "Pull Odoo partners, products, sales orders and lines, invoices (JSON-RPC search_read) into the inbox as JSONL.",
)

# Every 30 min for HubSpot (cheap when nothing changed: one search call per object type), hourly for Odoo;
# both well inside the daily freshness windows in policies.yaml. STOPPED until credentials are configured.
pull_hubspot_schedule = dg.ScheduleDefinition(
    name="pull_hubspot_schedule",
    job=pull_hubspot,
    cron_schedule="*/30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Incremental HubSpot pull (needs HUBSPOT_ACCESS_TOKEN).",
)
pull_odoo_schedule = dg.ScheduleDefinition(
    name="pull_odoo_schedule",
    job=pull_odoo,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Incremental Odoo pull (needs ODOO_URL, ODOO_DB, ODOO_USERNAME, ODOO_API_KEY).",
)


def hubspot_resource() -> HubSpotResource:
    # The token only through dg.EnvVar: resolved when a run starts, never shown in the UI or run config.
    return HubSpotResource(
        access_token=dg.EnvVar("HUBSPOT_ACCESS_TOKEN"), base_url=env("HUBSPOT_BASE_URL") or DEFAULT_BASE_URL
    )


def odoo_resource() -> OdooResource:
    return OdooResource(
        url=dg.EnvVar("ODOO_URL"),
        db=dg.EnvVar("ODOO_DB"),
        username=dg.EnvVar("ODOO_USERNAME"),
        api_key=dg.EnvVar("ODOO_API_KEY"),
    )


# --- daily partitions (assets/pull.py): the schedules ------------------------------------------------------

# Ticks of the partition schedules: today's partition (and ``late_edits`` previous days) every 30 min for
# HubSpot, hourly for Odoo, as the incremental pulls did.
PARTITION_CRONS = {"hubspot": "*/30 * * * *", "odoo": "15 * * * *"}
# Days before the late-edit days that a tick also requests when they were never run: Dagster 1.13's scheduler
# does not catch up missed ticks of a schedule (it runs only the latest one after the daemon was down; its
# catch-up needs a partition set, which 1.13 no longer gives a schedule), so the schedule looks back itself.
CATCH_UP_DAYS = 7


def source_configured(system: str, settings: Settings | None = None) -> bool:
    """Whether ``system``'s credentials are set (the sandbox sets the fakes' ones)."""
    s = settings or get_settings()
    if system == "hubspot":
        return bool(s.hubspot_access_token)
    if system == "odoo":
        return all((s.odoo_url, s.odoo_db, s.odoo_username, s.odoo_api_key))
    return False


def scheduled_partition_keys(
    start: date,
    tick: datetime,
    late_edits: int,
    never_run: Callable[[str], bool],
    catch_up_days: int = CATCH_UP_DAYS,
) -> list[str]:
    """The partitions one tick runs: the tick's day and ``late_edits`` days before it, then the
    ``catch_up_days`` before those that ``never_run`` (missed while the scheduler was down); none before
    ``start``. Newest first."""
    day = tick.astimezone(UTC).date()
    keys = []
    for back in range(late_edits + 1 + catch_up_days):
        d = day - timedelta(days=back)
        if d < start:
            break
        key = d.isoformat()
        if back <= late_edits or never_run(key):
            keys.append(key)
    return keys


def build_partition_schedule(
    system: str, job: "AssetJob", policies: Policies, *, running: bool
) -> dg.ScheduleDefinition:
    start = policies.partitions.start_for(system)
    late = policies.partitions.late_edits
    assets = partitioned_assets(system)

    def never_run(context: dg.ScheduleEvaluationContext, key: str) -> bool:
        instance = context.instance
        if all(key in instance.get_materialized_partitions(a) for a in assets):
            return False
        runs = instance.get_run_records(
            dg.RunsFilter(job_name=job.name, tags={"dagster/partition": key}), limit=1
        )
        return not runs

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=PARTITION_CRONS[system],
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Today's {system} partition and {late} previous day(s) (late edits) of every "
        f"api/{system}/* asset, plus days of the last {CATCH_UP_DAYS} that never ran (ticks missed while the "
        f"daemon was down). Runs by default once {system}'s credentials are set.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        tick = context.scheduled_execution_time or datetime.now(UTC)
        for key in scheduled_partition_keys(start, tick, late, lambda k: never_run(context, k)):
            yield dg.RunRequest(
                partition_key=key,
                run_key=f"{key}@{tick.astimezone(UTC):%Y-%m-%dT%H:%M}",
                tags={"integration/priority": "live"},
            )

    return _schedule


def pull_definitions(policies: Policies | None = None) -> dg.Definitions:
    """The pull jobs, the partitioned pull assets with their jobs and schedules, and the two API resources (the
    warehouse resource comes from the rest)."""
    policies = policies or load_policies()
    settings = get_settings()
    jobs = build_partition_jobs(policies)
    schedules = [
        build_partition_schedule(system, jobs[name], policies, running=source_configured(system, settings))
        for system, name in SOURCE_JOBS.items()
    ]
    return dg.Definitions(
        assets=build_partitioned_assets(policies),
        jobs=[pull_hubspot, pull_odoo, *jobs.values()],
        schedules=[pull_hubspot_schedule, pull_odoo_schedule, *schedules],
        resources={"hubspot": hubspot_resource(), "odoo": odoo_resource()},
    )
