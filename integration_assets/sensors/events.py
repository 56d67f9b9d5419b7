"""Sensor on the webhook event queue: when events wait, launch one drain run.

The sensor never consumes: it looks at the queue's depth and launches a ``drain_events`` run whose op takes
the deliveries itself, applies them and acks after its commit (docs/DAGSTER.md §4: acking in the tick can
lose a message when the launch fails, and on RabbitMQ a delivery belongs to the connection that received it,
which a tick closes). The run key is a drain id unique per launch (``drain_<utc>_<hex>``): run keys make a
launch idempotent, progress lives in the queue itself, so no cursor is needed.

One drain at a time per queue (the sources share one queue): while a drain run is queued or running the
tick skips, and runs carry the ``integration/event-queue`` tag so an instance can also enforce it with
``tag_concurrency_limits``. Two drains would still be correct (claims are disjoint, the ledger dedups), but
one at a time keeps batches large and the database free for the merges.
"""

from __future__ import annotations

import dagster as dg

from integration_assets.assets.events import DRAIN_JOB, DRAIN_OP, DRAIN_TAG, QUEUE_TAG
from integration_assets.events.drain import DEFAULT_BATCH, DEFAULT_MAX_EVENTS, new_drain_id
from integration_assets.queue import Queue, QueueError, open_queue

MINIMUM_INTERVAL_S = 15
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def queue_label(queue: Queue) -> str:
    """backend:name of a queue, e.g. ``sql:events`` or ``rabbitmq:integration`` (never credentials)."""
    name = (
        getattr(queue, "name", None) or getattr(getattr(queue, "config", None), "prefix", None) or "default"
    )
    return f"{queue.backend}:{name}"


def events_queue_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    runs = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=DRAIN_JOB, statuses=IN_FLIGHT), limit=1
    )
    if runs:
        return dg.SkipReason(
            f"drain run {runs[0].dagster_run.run_id} is still {runs[0].dagster_run.status.value}"
        )
    try:
        queue = open_queue()
    except QueueError as exc:
        return dg.SkipReason(f"event queue not usable: {exc}")
    try:
        depth, oldest = queue.depth(), queue.oldest_age_seconds()
        label = queue_label(queue)
    except QueueError as exc:
        return dg.SkipReason(f"event queue unavailable: {exc}")
    finally:
        queue.close()
    if depth == 0:
        return dg.SkipReason("no events waiting")
    drain_id = new_drain_id()
    age = "unknown" if oldest is None else f"{oldest:.1f}"
    context.log.info("%d event(s) waiting on %s (oldest %ss): launching %s", depth, label, age, drain_id)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=drain_id,
                run_config={
                    "ops": {
                        DRAIN_OP: {
                            "config": {
                                "drain_id": drain_id,
                                "max_events": DEFAULT_MAX_EVENTS,
                                "batch_size": DEFAULT_BATCH,
                            }
                        }
                    }
                },
                tags={
                    DRAIN_TAG: drain_id,
                    QUEUE_TAG: label,
                    "integration/queue_depth_at_launch": str(depth),
                    "integration/oldest_age_s_at_launch": age,
                },
            )
        ]
    )


def build_events_sensor(job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    return dg.SensorDefinition(
        name="events_queue_sensor",
        evaluation_fn=events_queue_requests,
        job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches one drain run of the webhook event queue when events wait (run key = drain id); "
        "skips while a drain is in flight.",
    )
