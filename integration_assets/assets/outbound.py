"""Outbound assets: the chain's writes to other systems (deal won → Odoo order → EasyPost label → write-back,
``integration_assets.outbound``), one asset per hop, run by the ``run_outbound`` job.

One op (``run_outbound_steps``, a multi-asset that can be subset) relays the outbox, then runs each selected
step over its queue in the chain's order, relaying again before each step so that the follow-ups of the
previous step are on its queue in the same run. Per asset it reports:

- a materialization when its step(s) did something in a target (sent, found by key, updated, skipped):
  "last materialized" and any freshness window then mean "the last time this hop moved a chain";
- otherwise an observation with the same figures (a run with nothing to do, or one whose messages only
  retried or were dead-lettered), so an idle run does not look like new work.

Metadata: sent, found (already done, found by key), skipped, updated, dead-lettered, retried, duplicates,
latency p50/p99 (first attempt → done, ms), and the run's relay count.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from integration_assets.assets.files import OWNERS, canonical_key
from integration_assets.outbound.relay import relay
from integration_assets.outbound.runner import StepReport, run_step
from integration_assets.resources import WarehouseResource

RUN_JOB = "run_outbound"
RUN_OP = "run_outbound_steps"
GROUP = "outbound"
OUTBOUND_TAG = "integration/outbound"


@dataclass(frozen=True)
class Hop:
    """One outbound asset: the step(s) it runs, in order, and where its input comes from."""

    key: dg.AssetKey
    steps: tuple[str, ...]
    target: str
    deps: tuple[dg.AssetKey, ...]
    description: str


SALE_ORDERS = dg.AssetKey(["outbound", "odoo", "sale_orders"])
LABELS = dg.AssetKey(["outbound", "easypost", "labels"])
PICKING_TRACKING = dg.AssetKey(["outbound", "odoo", "picking_tracking"])
DEAL_WRITEBACK = dg.AssetKey(["outbound", "hubspot", "deal_writeback"])
SHIPMENT_STATUS = dg.AssetKey(["outbound", "hubspot", "shipment_status"])

HOPS: tuple[Hop, ...] = (
    Hop(
        SALE_ORDERS,
        ("odoo_order",),
        "odoo",
        (canonical_key("deals"),),
        "Odoo sale orders for won HubSpot deals (step odoo_order): partner found or created, order found by "
        "client_order_ref hubspot-deal:<id> or created from the deal's line items, confirmed, stock reserved.",
    ),
    Hop(
        LABELS,
        ("compensate", "easypost_label"),
        "easypost",
        (SALE_ORDERS, canonical_key("sales_orders")),
        "EasyPost labels for confirmed (and, by policy, paid) orders (step easypost_label): shipment found by "
        "reference or created, rate chosen by policy, label bought; cancelled orders are compensated first "
        "(step compensate: no label, or refund / review after one).",
    ),
    Hop(
        PICKING_TRACKING,
        ("odoo_tracking",),
        "odoo",
        (LABELS,),
        "Tracking number written to the order's Odoo delivery picking(s) (carrier_tracking_ref; step "
        "odoo_tracking).",
    ),
    Hop(
        DEAL_WRITEBACK,
        ("hubspot_writeback",),
        "hubspot",
        (LABELS,),
        "HubSpot deal properties written back (step hubspot_writeback): Odoo order name, tracking number, "
        "shipment status, label URL.",
    ),
    Hop(
        SHIPMENT_STATUS,
        ("hubspot_tracking",),
        "hubspot",
        (LABELS, canonical_key("shipment_events")),
        "HubSpot deal shipment status from EasyPost tracker updates (step hubspot_tracking; never an older "
        "status over a newer one).",
    ),
)


class OutboundRunConfig(dg.Config):
    """One pass over the selected steps: up to ``max_messages`` messages per step."""

    max_messages: int = 1000


def percentile(values: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile (``q`` in 0..100) of a few hundred latencies: exact, no interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return int(ordered[int(rank) - 1])


def did_work(report: StepReport) -> bool:
    """The step changed or confirmed something in its target (what a materialization stands for)."""
    return bool(report.sent + report.found + report.updated + report.skipped + report.flagged)


def hop_metadata(reports: Sequence[StepReport], relayed: int) -> dict[str, Any]:
    """Figures of one asset's step(s) in this run (numbers, so the UI plots them over time)."""
    total = StepReport("+".join(r.step for r in reports))
    for r in reports:
        total.add(r)
    meta: dict[str, Any] = {
        "steps": total.step,
        "received": total.received,
        "sent": total.sent,
        "found": total.found,
        "skipped": total.skipped,
        "updated": total.updated,
        "flagged": total.flagged,
        "waiting": total.waiting,
        "dead_lettered": total.dead_lettered,
        "retried": total.retried,
        "duplicates": total.duplicates,
        "latency_p50_ms": percentile(total.latency_ms, 50) or 0,
        "latency_p99_ms": percentile(total.latency_ms, 99) or 0,
        "relayed_in_run": relayed,
    }
    if len(reports) > 1:
        meta["per_step"] = dg.MetadataValue.json({r.step: r.as_dict() for r in reports})
    errors = [e for r in reports for e in r.errors][:20]
    if errors:
        meta["errors"] = dg.MetadataValue.json(errors)  # chain ids, checks and reasons: no personal data
    return meta


@dg.multi_asset(
    name=RUN_OP,
    specs=[
        dg.AssetSpec(
            h.key,
            deps=list(h.deps),
            skippable=True,
            group_name=GROUP,
            owners=OWNERS,
            kinds={h.target},
            description=h.description,
            metadata={"steps": ", ".join(h.steps)},
        )
        for h in HOPS
    ],
    can_subset=True,
    op_tags={"integration/kind": "outbound"},
    description="Relay the outbox, then run each selected outbound step once over its queue, in chain order.",
)
def run_outbound_steps(  # type: ignore[no-untyped-def]
    context: dg.AssetExecutionContext, config: OutboundRunConfig, warehouse: WarehouseResource
):
    engine = warehouse.engine()
    relayed = relay(engine).published
    for hop in HOPS:
        if hop.key not in context.selected_asset_keys:
            continue
        t0 = time.perf_counter()
        reports = []
        for step in hop.steps:
            relayed += relay(engine).published  # the previous step's follow-ups, on this step's queue
            reports.append(run_step(engine, step, max_messages=config.max_messages))
        metadata = hop_metadata(reports, relayed)
        context.log.info(
            "%s: %d sent, %d found, %d skipped, %d dead-lettered, %d retried in %.2fs",
            hop.key.to_user_string(),
            metadata["sent"],
            metadata["found"],
            metadata["skipped"],
            metadata["dead_lettered"],
            metadata["retried"],
            time.perf_counter() - t0,
        )
        if any(did_work(r) for r in reports):
            yield dg.MaterializeResult(asset_key=hop.key, metadata=metadata)
        else:
            context.log_event(dg.AssetObservation(asset_key=hop.key, metadata=metadata))
