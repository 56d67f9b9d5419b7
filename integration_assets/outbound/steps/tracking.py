"""Step ``hubspot_tracking``: a chain's newest shipment status (EasyPost ``tracker.updated`` events, already
merged into ``shipment_events``) goes to the HubSpot deal through the ``hubspot/shipment_status`` contract.

The step reads the newest event of the chain's tracking code when it runs, not the one that enqueued it, and
writes only when that event is newer than what the chain last wrote: messages arriving late or out of order
never set an older status over a newer one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from integration_assets.mapping.outbound import render
from integration_assets.outbound.steps._chain import aware, writing
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult
from integration_assets.warehouse.schema import shipment_events


def latest_event(conn: sa.Connection, tracking_code: str) -> dict[str, Any] | None:
    """The newest tracker state of a tracking code (by the tracker's own change time)."""
    e = shipment_events.c
    row = (
        conn.execute(
            sa.select(e.status, e.status_detail, e.source_updated_at, e.tracking_code)
            .where(e.tracking_code == tracking_code)
            .order_by(e.source_updated_at.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


class HubSpotTrackingStep:
    """Tracker updated → the deal's shipment status (never an older one over a newer)."""

    name: str = "hubspot_tracking"
    target = "hubspot"

    def ledger_sub(self, msg: OutboxMessage) -> str:
        """One write per tracking message (its outbox key: one per tracker event)."""
        return msg.key

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        chain = ctx.chain(msg.chain_id)
        with ctx.engine.connect() as conn:
            code = (chain or {}).get("tracking_code") or msg.payload.get("tracking_code")
            event = latest_event(conn, str(code)) if code else None
        if chain is None or event is None:
            return StepResult(outcome="skipped")
        at: datetime | None = aware(event["source_updated_at"])
        written = aware(chain.get("shipment_status_at"))
        if written is not None and at is not None and at <= written:
            return StepResult(outcome="skipped", target_ref=str(code))  # as new or newer is written already
        deal_id = str(chain.get("deal_id") or msg.chain_id)
        payload = render(
            "hubspot/shipment_status",
            {
                "deal_id": deal_id,
                "tracking_code": code,
                "shipment_status": event["status"],
                "status_detail": event.get("status_detail"),
                "shipment_status_at": at.isoformat() if at else None,
            },
        )
        properties = {k: "" if v is None else str(v) for k, v in payload.values.items()}
        if ctx.dry_run:
            return StepResult(
                outcome="sent",
                contract_version=payload.contract,
                preview=[
                    {
                        "target": "hubspot",
                        "call": "deals.update",
                        "contract": payload.contract,
                        "id": deal_id,
                        "values": properties,
                    }
                ],
            )
        with writing(payload.contract):
            ctx.targets.hubspot.update_deal(deal_id, properties)
        return StepResult(
            outcome="sent",
            target_id=deal_id,
            target_ref=str(code),
            contract_version=payload.contract,
            chain_updates={"shipment_status": event["status"], "shipment_status_at": at},
        )
