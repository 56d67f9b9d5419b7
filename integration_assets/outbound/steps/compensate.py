"""Step ``compensate``: the chain's Odoo order was cancelled (``sales_orders`` merged with state ``cancel``).

Before the label: the chain becomes ``cancelled`` and the label step skips it. While the label step is in
flight (its ledger row ``started``), this step retries later rather than guess. After the label: policy
``cancel_after_label`` refunds it through EasyPost (``POST /v2/shipments/{id}/refund``, docs/SOURCES.md §4.5;
a retry first reads the shipment's ``refund_status``, so a refund is asked once) or holds the chain for review.
"""

from __future__ import annotations

from integration_assets.outbound.errors import NeedsReview, StepUnavailable
from integration_assets.outbound.steps._chain import generation_sub, ledger_status, retrying
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult

# refund_status values after which asking again changes nothing (docs/SOURCES.md §4.5).
_REFUND_ASKED = frozenset({"submitted", "refunded"})


class CompensateStep:
    """Order cancelled → no label (before) or the label refunded / held for review (after)."""

    name: str = "compensate"
    target = "easypost"

    def ledger_sub(self, msg: OutboxMessage) -> str:
        """One write per chain generation, whichever message asks for it."""
        return generation_sub(msg)

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        chain = ctx.chain(msg.chain_id)
        # The label step's write of this generation (same sub-key rule as the runner's: base.ledger_sub).
        label_state = ledger_status(ctx, ctx.ledger_key("easypost_label", msg.chain_id, generation_sub(msg)))
        if chain is None or chain.get("status") in ("cancelled", "refunded", "review"):
            return StepResult(outcome="skipped")
        cancelled = str(msg.payload.get("order_id") or "")
        if cancelled and chain.get("order_id") and cancelled != str(chain["order_id"]):
            return StepResult(outcome="skipped")  # an earlier generation's order
        shipment_id = chain.get("shipment_id")
        if not shipment_id:
            if label_state == "started":
                # Whether a label exists is not known yet: compensate once the label step has settled.
                raise StepUnavailable(
                    f"chain {msg.chain_id}: the label step is in flight; compensating later"
                )
            return StepResult(
                outcome="updated",
                target_id=str(chain.get("order_id") or ""),
                chain_updates={"status": "cancelled"},
                preview=[{"target": "warehouse", "call": "chain.cancel", "chain_id": msg.chain_id}]
                if ctx.dry_run
                else [],
            )
        if ctx.policy.cancel_after_label == "review":
            raise NeedsReview(
                f"order {chain.get('order_name')} of deal {chain.get('deal_id')} was cancelled after its label "
                f"{shipment_id} was bought; policy cancel_after_label review holds it for a person",
                check_name="needs_review",
            )
        if ctx.dry_run:
            return StepResult(
                outcome="sent",
                preview=[{"target": "easypost", "call": "shipments.refund", "id": str(shipment_id)}],
            )
        easypost = ctx.targets.easypost
        if retrying(ctx, self, msg, attempt):
            shipment = easypost.get_shipment(str(shipment_id))
            if shipment.get("refund_status") in _REFUND_ASKED:
                return StepResult(
                    outcome="found",
                    target_id=str(shipment_id),
                    target_ref=str(shipment.get("refund_status")),
                    chain_updates={"status": "refunded"},
                )
        shipment = easypost.refund(str(shipment_id))
        status = shipment.get("refund_status")
        if status not in _REFUND_ASKED:
            raise NeedsReview(
                f"EasyPost refused to refund label {shipment_id} of order {chain.get('order_name')} "
                f"(refund_status {status}); a person must settle it with the carrier",
                check_name="needs_review",
            )
        return StepResult(
            outcome="sent",
            target_id=str(shipment_id),
            target_ref=str(status),
            chain_updates={"status": "refunded"},
        )
