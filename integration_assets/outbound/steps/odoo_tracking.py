"""Step ``odoo_tracking``: the bought label's tracking code goes onto the order's Odoo delivery picking(s)
(``carrier_tracking_ref``, docs/SOURCES.md §2.6), through the ``odoo/picking_tracking`` contract.

Writing the same value again changes nothing, so a retry after a lost answer simply writes it again.
"""

from __future__ import annotations

from integration_assets.mapping.outbound import render
from integration_assets.outbound.errors import BadInput
from integration_assets.outbound.steps._chain import generation_sub, picking_ids, writing
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult


class OdooTrackingStep:
    """Label bought → ``carrier_tracking_ref`` on the pickings."""

    name: str = "odoo_tracking"
    target = "odoo"

    def ledger_sub(self, msg: OutboxMessage) -> str:
        """One write per chain generation, whichever message asks for it."""
        return generation_sub(msg)

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        chain = ctx.chain(msg.chain_id)
        if chain is None or not chain.get("tracking_code"):
            if ctx.dry_run:
                return StepResult(outcome="skipped")
            raise BadInput(f"chain {msg.chain_id} has no tracking code to write", field="tracking_code")
        if chain.get("status") in ("cancelled", "refunded"):
            return StepResult(outcome="skipped")
        pickings = picking_ids(chain)
        if not pickings:
            return StepResult(outcome="skipped")  # services only: Odoo made no delivery
        payload = render(
            "odoo/picking_tracking",
            {
                "tracking_code": chain["tracking_code"],
                "carrier": msg.payload.get("carrier"),
                "label_url": chain.get("label_url"),
            },
        )
        ref = str(payload.values.get("carrier_tracking_ref") or chain["tracking_code"])
        if ctx.dry_run:
            return StepResult(
                outcome="sent",
                contract_version=payload.contract,
                preview=[
                    {
                        "target": "odoo",
                        "call": "stock.picking.write",
                        "contract": payload.contract,
                        "ids": pickings,
                        "values": payload.values,
                    }
                ],
            )
        with writing(payload.contract):
            ctx.targets.odoo.write_picking_tracking(pickings, ref)
        return StepResult(
            outcome="sent",
            target_id=",".join(str(p) for p in pickings),
            target_ref=ref,
            contract_version=payload.contract,
        )
