"""``api/stripe/events``: Stripe events pulled per UTC day and applied through the event path (issue 13,
"webhook gap-fill").

A partition run pulls the events *created* in its window ``[day 00:00, next day 00:00)`` UTC from
``GET /v1/events`` (``connectors/stripe``) and applies them through ``events.pulled``: published under the
webhook's own key (``stripe:evt_…``) to a SQL queue of the partition in the warehouse and drained by the
same drain as webhook deliveries, so the ``processed_events`` ledger applies an event once whichever copy,
delivered or pulled, comes first. Only events of the objects with an event contract are taken (PaymentIntents, charges,
refunds: what the webhook endpoint is subscribed to); the account's other events are counted
(``other_objects_skipped``), not dead-lettered. A day Stripe no longer keeps all events of (more than 30 days ago) is
pulled from the PaymentIntent, charge and refund lists instead: the objects created that day, in their
current state (``stripe:pull:<id>:<digest>`` records dated at the listing).

Each day gets its own materialization with its counts: events pulled, applied, duplicates (already applied
through a webhook or an earlier pull), stale, ignored, dead-lettered, records outside the window, and the
source (``events`` or ``objects``). A day with nothing new still materializes (the day was checked). A day
whose pull or drain fails fails the run (transient: a retry or a backfill of the partition completes it;
the events of a drain that stopped stay in the partition's queue and are drained by the re-run).
``warehouse/payments`` gets a materialization when events were applied to it.

The partitions, backfill policy and priority follow the other API pulls (``assets/pull.py``): start at
``partitions.start`` (or ``partitions.sources.stripe.start``), today included, ``BackfillPolicy.multi_run``
with ``partitions.max_partitions_per_run``; a run of a backfill asks the shared Stripe API budget with
priority ``backfill``.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import sqlalchemy as sa

from integration_assets.assets.files import ENTITY_TAG, OWNERS, canonical_key
from integration_assets.checks.inrun import evaluate_checks
from integration_assets.connectors.stripe import OBJECT_LISTS, StripeClient, Window
from integration_assets.contracts.spec import all_contracts
from integration_assets.errors import TerminalError, TransientError
from integration_assets.events.pulled import (
    PulledReport,
    apply_pulled,
    event_messages,
    pull_queue_name,
    stripe_object_messages,
)
from integration_assets.jobs.pull import CATCH_UP_DAYS, scheduled_partition_keys
from integration_assets.observability.logging import correlation
from integration_assets.policies import Policies, load_policies
from integration_assets.quality.connector_health import warehouse_status_recorder
from integration_assets.resources import WarehouseResource
from integration_assets.settings import get_settings
from integration_assets.warehouse.api_budget import api_budget_for, priority_from_tags
from integration_assets.warehouse.schema import payments

if TYPE_CHECKING:  # what define_asset_job returns (not exported by dagster's top level)
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition as AssetJob,
    )

__all__ = [
    "STRIPE_EVENTS_JOB",
    "STRIPE_EVENTS_KEY",
    "STRIPE_EVENTS_TABLE",
    "build_stripe_events_asset",
    "build_stripe_events_job",
    "build_stripe_events_schedule",
    "stripe_pull_definitions",
    "stripe_partitions_def",
]

STRIPE_EVENTS_KEY = dg.AssetKey(["api", "stripe", "events"])
STRIPE_EVENTS_JOB = "api_stripe_events"  # assets/pull.py's partition_job_name("stripe", "events")
STRIPE_EVENTS_TABLE = "payments"  # the canonical table the events feed
POOL = "stripe_api"
# Hourly: today's and the late-edit days' events (Stripe retries a webhook for up to three days, so a missed
# delivery is filled within the hour even while Stripe still retries it; the ledger makes both copies one).
STRIPE_CRON = "20 * * * *"


def stripe_partitions_def(policies: Policies | None = None) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from Stripe's ``partitions`` start; today's partition included (as
    ``assets/pull.py``'s ``partitions_def_for``)."""
    start = (policies or load_policies()).partitions.start_for("stripe")
    return dg.DailyPartitionsDefinition(start_date=start.strftime("%Y-%m-%d"), timezone="UTC", end_offset=1)


def _failure(key: str, exc: Exception) -> dg.Failure:
    kind = "terminal" if isinstance(exc, TerminalError) else "transient"
    advice = (
        "fix before re-running" if kind == "terminal" else "a retry or backfill of the partition completes it"
    )
    return dg.Failure(
        description=f"stripe/events partition {key} failed ({kind}; {advice}): {exc}",
        metadata={"kind": kind, "error": type(exc).__name__, "partition": key},
        allow_retries=kind == "transient",
    )


def handled_objects() -> frozenset[str]:
    """The Stripe object types with an event contract (``payment_intent``, ``charge``, ``refund``)."""
    return frozenset(c.entity for c in all_contracts() if c.system == "stripe" and c.delivery == "event")


def pull_day(
    client: StripeClient, engine: sa.Engine, key: str, *, drain_id: str | None = None
) -> tuple[PulledReport, dict[str, Any]]:
    """Pull one partition's window and apply it; returns the report and the day's metadata."""
    window = Window.day(key)
    outside_before, pages_before = client.outside_window, client.pages
    skipped = 0
    if client.events_complete(window):
        source = "events"
        # /v1/events lists every event of the account; the webhook endpoint is subscribed to those of the
        # objects we have event contracts for (contracts/stripe/<object>_event), so only those are pulled.
        families = handled_objects()
        wanted = []
        for event in client.events(window):
            data = event.get("data")
            obj = data.get("object") if isinstance(data, dict) else None
            if isinstance(obj, dict) and obj.get("object") not in families:
                skipped += 1
                continue
            wanted.append(event)
        messages = event_messages("stripe", wanted)
    else:
        source = "objects"
        as_of = int(client.clock())
        objects = [o for kind in OBJECT_LISTS for o in client.objects(kind, window)]
        messages = stripe_object_messages(objects, as_of=as_of)
    report = apply_pulled(
        messages, engine=engine, queue_name=pull_queue_name("stripe", key), drain_id=drain_id
    )
    counts = report.as_dict()
    metadata: dict[str, Any] = {
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "source": source,
        "events_pulled": report.pulled,
        "records_outside_window": client.outside_window - outside_before,
        "other_objects_skipped": skipped,
        "pages": client.pages - pages_before,
        "applied": report.applied,
        "duplicates": report.duplicates,
        "stale": report.stale,
        "ignored": report.ignored,
        "dead_lettered": report.dead_lettered,
        "already_queued": report.already_queued,
        "left_in_queue": report.left_in_queue,
        "queue_name": report.queue_name,
        "applied_per_table": dg.MetadataValue.json(counts["applied_per_table"]),
        "dead_letter_reasons": dg.MetadataValue.json(counts["dead_letter_reasons"]),
    }
    return report, metadata


def build_stripe_events_asset(policies: Policies | None = None) -> dg.AssetsDefinition:
    policies = policies or load_policies()
    partitions_def = stripe_partitions_def(policies)
    window = policies.for_entity("stripe", "payment_intent").freshness

    @dg.asset(
        key=STRIPE_EVENTS_KEY,
        group_name="api_stripe",
        owners=OWNERS,
        kinds={"api", "stripe"},
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.multi_run(
            max_partitions_per_run=policies.partitions.max_partitions_per_run
        ),
        pool=POOL,
        required_resource_keys={"warehouse"},
        op_tags={"integration/kind": "pull", ENTITY_TAG: "stripe.events"},
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=window.fail, warn_window=window.warn),
        output_required=False,  # one materialization per day is logged instead (each with its own counts)
        description="Stripe events created on the partition's UTC day, pulled from GET /v1/events (the "
        "PaymentIntent, charge and refund lists past Stripe's 30-day event retention) and applied through the "
        "webhook event path: the processed_events ledger applies each event once, delivered or pulled.",
    )
    def _api(context: dg.AssetExecutionContext) -> Iterator[Any]:
        warehouse: WarehouseResource = context.resources.warehouse
        warehouse.upgrade()
        engine = warehouse.engine()
        priority = priority_from_tags(context.run.tags)
        budget = api_budget_for(engine, "stripe")
        applied = 0
        try:
            client = StripeClient.from_settings(
                api_budget=budget,
                priority=priority,
                status_recorder=warehouse_status_recorder("stripe", engine),
            )
        except TerminalError as exc:
            raise _failure(context.partition_key_range.start, exc) from exc
        try:
            for key in context.partition_keys:
                with correlation(run_id=context.run_id, source_system="stripe", entity="events"):
                    try:
                        report, metadata = pull_day(
                            client, engine, key, drain_id=f"pull_stripe_{key}_{context.run_id[:8]}"
                        )
                    except (TerminalError, TransientError) as exc:
                        raise _failure(key, exc) from exc
                    except sa.exc.OperationalError as exc:  # the warehouse went away: transient
                        raise _failure(key, TransientError(type(exc).__name__)) from exc
                if report.drain.outage or report.left_in_queue:
                    raise _failure(
                        key,
                        TransientError(
                            f"{report.left_in_queue} event(s) left in {report.queue_name}"
                            f"{': ' + report.drain.outage if report.drain.outage else ''}"
                        ),
                    )
                if budget is not None:
                    metadata |= {f"api_budget_{k}": v for k, v in budget.stats().as_metadata().items()}
                    metadata["api_budget_priority"] = priority
                context.log.info(
                    "stripe/events %s (%s): pulled %d, applied %d, duplicates %d, stale %d, ignored %d, "
                    "dead-lettered %d",
                    key,
                    metadata["source"],
                    report.pulled,
                    report.applied,
                    report.duplicates,
                    report.stale,
                    report.ignored,
                    report.dead_lettered,
                )
                context.log_event(
                    dg.AssetMaterialization(asset_key=context.asset_key, partition=key, metadata=metadata)
                )
                applied += report.drain.totals.tables.get(STRIPE_EVENTS_TABLE, 0)
        finally:
            client.close()
        if applied:
            with engine.connect() as conn:
                total = conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one()
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=canonical_key(STRIPE_EVENTS_TABLE),
                    description="events applied by the Stripe events pull",
                    metadata={
                        "dagster/row_count": int(total),
                        "events_applied": applied,
                        "partitions": dg.MetadataValue.json(list(context.partition_keys)),
                    },
                )
            )
            # Every materialization carries its checks' evaluations, whichever path wrote it (checks.inrun).
            evaluate_checks(context, [STRIPE_EVENTS_TABLE], warehouse)
        yield from ()  # every materialization was logged above, one per day

    return _api


def build_stripe_events_job(policies: Policies | None = None) -> "AssetJob":
    """The job of ``api/stripe/events`` (what a backfill of it and the schedule launch), in one process."""
    return dg.define_asset_job(
        STRIPE_EVENTS_JOB,
        selection=dg.AssetSelection.assets(STRIPE_EVENTS_KEY),
        partitions_def=stripe_partitions_def(policies),
        description="Pull Stripe's events for the partitions' UTC days and apply them through the event path.",
        tags={ENTITY_TAG: "stripe.events", "integration/kind": "pull"},
        executor_def=dg.in_process_executor,
    )


def build_stripe_events_schedule(
    job: "AssetJob", policies: Policies | None = None, *, running: bool
) -> dg.ScheduleDefinition:
    """``api_stripe_events_schedule``: the tick's day and ``partitions.late_edits`` days before it, plus days
    of the last week that never ran (as the other API pulls' schedules, jobs/pull.py)."""
    policies = policies or load_policies()
    start = policies.partitions.start_for("stripe")
    late = policies.partitions.late_edits

    def never_run(context: dg.ScheduleEvaluationContext, key: str) -> bool:
        if key in context.instance.get_materialized_partitions(STRIPE_EVENTS_KEY):
            return False
        runs = context.instance.get_run_records(
            dg.RunsFilter(job_name=job.name, tags={"dagster/partition": key}), limit=1
        )
        return not runs

    @dg.schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=STRIPE_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
        description=f"Today's Stripe events partition and {late} previous day(s), plus days of the last "
        f"{CATCH_UP_DAYS} that never ran (ticks missed while the daemon was down). Runs by default once "
        "STRIPE_API_KEY is set.",
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


def stripe_pull_definitions(policies: Policies | None = None) -> dg.Definitions:
    """``api/stripe/events``, its job and its schedule (RUNNING once STRIPE_API_KEY is set)."""
    policies = policies or load_policies()
    job = build_stripe_events_job(policies)
    running = bool(get_settings().stripe_api_key)
    return dg.Definitions(
        assets=[build_stripe_events_asset(policies)],
        jobs=[job],
        schedules=[build_stripe_events_schedule(job, policies, running=running)],
    )
