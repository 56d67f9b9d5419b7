"""Sensor on the outbound chain: when the outbox has rows not yet relayed or a step queue holds messages,
launch one ``run_outbound`` run (relay + every step once).

The tick only reads: one query on the outbox (unsent rows, newest id) and the depth of each step queue; the
run relays, calls the targets and acks (docs/DAGSTER.md §4: a tick that consumed could lose a message when
the launch fails). One run at a time: while a ``run_outbound`` run is queued or running the tick skips.

The run key is the tick's state: the newest unsent outbox id, the unsent count, each queue's depth and the
id of the last finished run. The same state seen twice launches one run; a run that finishes makes the
next tick's state new, so messages waiting out a retry backoff are picked up by a later run (at most one
small in-process run per ``MINIMUM_INTERVAL_S`` while something waits).
"""

from __future__ import annotations

import hashlib

import dagster as dg
import sqlalchemy as sa

from integration_assets.assets.outbound import OUTBOUND_TAG, RUN_JOB
from integration_assets.outbound.queries import STEPS, outbox_state, queue_backlog
from integration_assets.sensors.events import IN_FLIGHT
from integration_assets.warehouse.db import at_head, get_engine

MINIMUM_INTERVAL_S = 30


def outbound_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    runs = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=RUN_JOB, statuses=IN_FLIGHT), limit=1
    )
    if runs:
        return dg.SkipReason(f"run {runs[0].dagster_run.run_id} is still {runs[0].dagster_run.status.value}")
    if not at_head():
        return dg.SkipReason("warehouse not migrated yet: run `integration-assets db upgrade` or any run")
    engine = get_engine()
    try:
        unsent, newest = outbox_state(engine)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        return dg.SkipReason(f"warehouse unavailable: {type(exc).__name__}")
    depths: dict[str, int] = {}
    for step in STEPS:
        depth, _age, error = queue_backlog(engine, step)
        if error:
            context.log.warning("outbound queue of %s unreadable: %s", step, error)
        depths[step] = depth or 0
    waiting = unsent + sum(depths.values())
    if not waiting:
        return dg.SkipReason("nothing waiting in the outbox or the step queues")
    last = context.instance.get_run_records(filters=dg.RunsFilter(job_name=RUN_JOB), limit=1)
    last_id = last[0].dagster_run.run_id if last else "-"
    state = f"{newest}:{unsent}:" + ",".join(f"{s}={depths[s]}" for s in STEPS) + f":{last_id}"
    run_key = "outbound_" + hashlib.sha256(state.encode()).hexdigest()[:16]
    busy = ", ".join(f"{s} {n}" for s, n in depths.items() if n)
    context.log.info("outbound: %d unsent outbox row(s), queued: %s -> %s", unsent, busy or "none", run_key)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                tags={
                    OUTBOUND_TAG: run_key,
                    "integration/outbox_unsent_at_launch": str(unsent),
                    "integration/queued_at_launch": str(sum(depths.values())),
                },
            )
        ]
    )


def build_outbound_sensor(job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    return dg.SensorDefinition(
        name="outbound_sensor",
        evaluation_fn=outbound_requests,
        job=job,
        minimum_interval_seconds=MINIMUM_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches run_outbound when the outbox has unsent rows or a step queue has messages "
        "(run key = the tick's state); skips while a run is in flight.",
    )
