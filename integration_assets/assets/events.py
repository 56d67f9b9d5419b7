"""Event-fed assets: one drain of the webhook event queue per run (``integration_assets.events``).

``drain_event_queue`` (a multi-asset, job ``drain_events``) consumes up to ``max_events`` deliveries itself, in
batches, and reports:

- a materialization of ``warehouse/payments`` / ``warehouse/shipment_events`` when the drain applied events
  to them (never when nothing arrived: freshness must mean "an event arrived"), and of the HubSpot tables
  (``warehouse/contacts`` …) its property changes patched, each followed by the evaluations of every check
  of that table (``checks.inrun``), so the UI's checks stay tied to the latest materialization;
- an observation of ``events/queue`` on every run: events in, applied, duplicates suppressed, dead-lettered,
  retried, queue depth and oldest message age, so the queue's backlog is plotted over time;
- the same figures as run tags (``integration/events_*``), visible in the runs list.

A warehouse outage ends the run as failed (after the batch was given back to the queue without spending an
attempt), so run-failure alerts see it; the next sensor tick launches a new drain.
"""

import time
from typing import Any

import dagster as dg

from integration_assets.assets.files import OWNERS, canonical_key
from integration_assets.checks.inrun import evaluate_checks
from integration_assets.events.drain import (
    DEFAULT_BATCH,
    DEFAULT_MAX_EVENTS,
    DrainReport,
    drain,
    new_drain_id,
)
from integration_assets.providers.hubspot import HUBSPOT_PROPERTY_CHANGES
from integration_assets.resources import WarehouseResource
from integration_assets.warehouse.schema import CANONICAL_TABLES

QUEUE_KEY = dg.AssetKey(["events", "queue"])
DRAIN_JOB = "drain_events"
DRAIN_OP = "drain_event_queue"
DRAIN_TAG = "integration/drain"
# Run-level concurrency: one drain at a time per queue (all sources share one queue). The sensor checks it
# itself; an instance can enforce it too with run_coordinator tag_concurrency_limits on this key.
QUEUE_TAG = "integration/event-queue"

EVENT_TABLES = {"payments": "stripe", "shipment_events": "easypost"}
_DESCRIPTIONS = {
    "payments": "Stripe PaymentIntents, charges and refunds from webhook events (contracts/stripe/*_event): "
    "amounts in minor units, status, Odoo order/invoice from metadata; the newest event wins.",
    "shipment_events": "Latest status per EasyPost tracker from tracker.* webhook events "
    "(contracts/easypost/tracker_event); the newest tracker state wins.",
}

queue_spec = dg.AssetSpec(
    QUEUE_KEY,
    description="The webhook event queue (INTEGRATION_QUEUE_URL: the SQL queue table or RabbitMQ). Observed by "
    "every drain: depth, oldest message age, and what the drain did with the events it took.",
    group_name="observability",
    owners=OWNERS,
    kinds={"queue"},
)


class DrainConfig(dg.Config):
    """One drain: up to ``max_events`` deliveries, applied in batches of ``batch_size`` (one transaction each)."""

    max_events: int = DEFAULT_MAX_EVENTS
    batch_size: int = DEFAULT_BATCH
    drain_id: str = ""  # the sensor's run key; empty: a new one


def drain_metadata(report: DrainReport) -> dict[str, Any]:
    """The per-run figures (numbers, so the UI plots them over time)."""
    t = report.totals
    return {
        "drain_id": report.drain_id,
        "queue_backend": report.backend,
        "events_in": t.events_in,
        "applied": t.applied,
        "stale": t.stale,
        "ignored": t.ignored,
        "duplicates_suppressed": t.duplicates,
        "dead_lettered": t.dead_lettered,
        "retried": t.retried,
        "batches": report.batches,
        "events_per_s": round(report.events_per_s, 1),
        "queue_depth": report.depth_after if report.depth_after is not None else -1,
        "oldest_message_age_s": round(report.oldest_age_s_after, 3)
        if report.oldest_age_s_after is not None
        else -1.0,
        "applied_per_table": dg.MetadataValue.json(dict(t.tables)),
        "dead_letter_reasons": dg.MetadataValue.json(dict(t.reasons)),
        "outage": report.outage or "",
        "accounting_balanced": report.balanced,
    }


@dg.multi_asset(
    name=DRAIN_OP,
    specs=[
        dg.AssetSpec(
            canonical_key(table),
            deps=[QUEUE_KEY],
            skippable=True,
            group_name=system,
            owners=OWNERS,
            kinds={"sql", "pandas", "pandera"},
            description=_DESCRIPTIONS[table],
        )
        for table, system in EVENT_TABLES.items()
    ],
    can_subset=False,
    op_tags={"integration/kind": "events"},
    description="Drain the webhook event queue once: map events through their contracts, merge, ledger, ack.",
)
def drain_events(context: dg.AssetExecutionContext, config: DrainConfig, warehouse: WarehouseResource):  # type: ignore[no-untyped-def]
    drain_id = config.drain_id or context.run.tags.get(DRAIN_TAG) or new_drain_id()
    t0 = time.perf_counter()
    report = drain(
        engine=warehouse.engine(),
        max_events=config.max_events,
        batch_size=config.batch_size,
        drain_id=drain_id,
    )
    metadata = drain_metadata(report)
    context.log.info(
        "drain %s: %d in, %d applied, %d stale, %d duplicates, %d dead-lettered, %d retried in %.2fs",
        drain_id,
        report.totals.events_in,
        report.totals.applied,
        report.totals.stale,
        report.totals.duplicates,
        report.totals.dead_lettered,
        report.totals.retried,
        time.perf_counter() - t0,
    )
    context.log_event(dg.AssetObservation(asset_key=QUEUE_KEY, metadata=metadata))
    context.instance.add_run_tags(
        context.run_id,
        {
            f"integration/events_{k}": str(metadata[k])
            for k in (
                "events_in",
                "applied",
                "duplicates_suppressed",
                "dead_lettered",
                "retried",
                "queue_depth",
            )
        },
    )
    written = sorted(t for t, n in report.totals.tables.items() if n)
    for table in sorted(set(HUBSPOT_PROPERTY_CHANGES.values()) & set(written)):
        # Yielded, not logged: stored before the checks below, which are tied to it.
        yield dg.AssetMaterialization(
            asset_key=canonical_key(table),
            description="HubSpot property changes applied by a queue drain",
            metadata={"property_changes_applied": report.totals.tables[table], "drain_id": drain_id},
        )
    for table in EVENT_TABLES:
        if report.totals.tables.get(table):
            yield dg.MaterializeResult(
                asset_key=canonical_key(table),
                metadata={"events_applied": report.totals.tables[table], **metadata},
            )
    # Every materialization carries its checks' evaluations (checks.inrun): the same checks, in this run.
    evaluate_checks(context, [t for t in written if t in CANONICAL_TABLES], warehouse)
    if report.outage:
        raise dg.Failure(description=f"drain {drain_id} stopped: {report.outage}", metadata=metadata)


drain_events_job = dg.define_asset_job(
    DRAIN_JOB,
    selection=dg.AssetSelection.assets(drain_events).without_checks(),
    description="One drain of the webhook event queue (launched by events_queue_sensor, one run per drain).",
    executor_def=dg.in_process_executor,  # one op: no subprocess per run for a micro-batch
    tags={"integration/kind": "events"},
)
