"""Step ``hubspot_writeback``: the Odoo order name, tracking number, shipment status and label URL go to the
HubSpot deal's properties (``PATCH /crm/v3/objects/deals/{id}``, docs/SOURCES.md §1.7), through the
``hubspot/deal_writeback`` contract.

A PATCH of the same values is idempotent in effect: the record id is the key, a retry writes them again.
The status written is the chain's current one, so a write-back delayed behind a tracking update never sets
an older status.
"""

from __future__ import annotations

from integration_assets.mapping.outbound import render
from integration_assets.outbound.errors import BadInput
from integration_assets.outbound.steps._chain import generation_sub, writing
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult


class HubSpotWritebackStep:
    """Label bought → the deal shows its order, tracking number, status and label."""

    name: str = "hubspot_writeback"
    target = "hubspot"

    def ledger_sub(self, msg: OutboxMessage) -> str:
        """One write per chain generation, whichever message asks for it."""
        return generation_sub(msg)

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        chain = ctx.chain(msg.chain_id)
        if chain is None or not chain.get("order_id"):
            if ctx.dry_run:
                return StepResult(outcome="skipped")
            raise BadInput(f"chain {msg.chain_id} has no order to write back", field="order_id")
        deal_id = str(chain.get("deal_id") or msg.chain_id)
        payload = render(
            "hubspot/deal_writeback",
            {
                "deal_id": deal_id,
                "order_name": chain.get("order_name"),
                "order_id": chain.get("order_id"),
                "tracking_code": chain.get("tracking_code"),
                "carrier": msg.payload.get("carrier"),
                "shipment_status": chain.get("shipment_status"),
                "label_url": chain.get("label_url"),
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
        cancelled = chain.get("status") in ("cancelled", "refunded", "review")
        return StepResult(
            outcome="sent",
            target_id=deal_id,
            target_ref=str(chain.get("tracking_code") or ""),
            contract_version=payload.contract,
            chain_updates={} if cancelled else {"status": "written_back"},
        )
