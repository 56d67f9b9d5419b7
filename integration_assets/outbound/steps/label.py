"""Step ``easypost_label``: a confirmed order gets a shipment and a bought label in EasyPost.

The order's state is read live from Odoo (the warehouse copy may be an hour old): a cancelled order, or a chain
compensation already cancelled, gets no label (outcome ``skipped``). With policy ``require_payment`` the step
waits (outcome ``waiting``) until a succeeded Stripe payment for the order is in the warehouse; the payment's
capture enqueues the label again. The address is the Odoo partner's, through the ``easypost/shipment``
contract, verified first (a rejected address is permanent). On a retry the shipment is looked up by its
``reference`` (EasyPost has no idempotency key, docs/SOURCES.md §4.1, §4.5), and a shipment already bought is
not bought again. Then two follow-ups: the tracking code to the Odoo picking and the write-back to HubSpot.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.connectors.easypost.client import select_rate
from integration_assets.mapping.outbound import render
from integration_assets.outbound.errors import BadInput
from integration_assets.outbound.steps._chain import (
    aware,
    generation_of,
    generation_sub,
    order_ref,
    retrying,
    suffix,
    writing,
)
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult
from integration_assets.warehouse.schema import payments

# How far before the chain's first known time a shipment of the chain may have been created (clock skew
# between EasyPost and us; the lookup pages newest first, so a wide window costs little).
_LOOKUP_MARGIN = timedelta(days=1)
_PAID = ("succeeded",)


class EasyPostLabelStep:
    """Confirmed order → verified address → shipment (found by reference or created) → rate → label."""

    name: str = "easypost_label"
    target = "easypost"

    def ledger_sub(self, msg: OutboxMessage) -> str:
        """One write per chain generation, whichever message asks for it."""
        return generation_sub(msg)

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        chain = ctx.chain(msg.chain_id)
        if chain is None or not chain.get("order_id"):
            if ctx.dry_run:
                return StepResult(outcome="skipped")  # the order step has not run for real yet
            raise BadInput(f"chain {msg.chain_id} has no Odoo order to ship", field="order_id")
        generation = generation_of(msg.payload, chain)
        if chain.get("status") in ("cancelled", "refunded"):
            return StepResult(outcome="skipped")
        if (
            chain.get("shipment_id")
            and chain.get("tracking_code")
            and int(chain.get("generation") or 1) == generation
        ):
            return StepResult(outcome="skipped", target_id=str(chain["shipment_id"]))  # bought already
        order_id = int(chain["order_id"])
        odoo = ctx.targets.odoo
        order = odoo.read_order(order_id)
        # The order step does not read the order back after creating it: its name is recorded here.
        named = {"order_name": order.get("name")} if order.get("name") else {}
        reference = order_ref(str(chain.get("deal_id") or msg.chain_id), generation)
        if order.get("state") == "cancel":
            result = self._cancelled(ctx, msg, attempt, chain, reference)
            result.chain_updates.update(named)
            return result
        if ctx.policy.require_payment and not self._paid(ctx, chain, order):
            return StepResult(outcome="waiting", chain_updates=named)

        partner = odoo.find_partner(partner_id=int(chain.get("partner_id") or order["partner_id"]))
        if partner is None:
            raise BadInput(
                f"Odoo partner {chain.get('partner_id')} of order {order.get('name')} is gone",
                field="partner_id",
            )
        payload = render("easypost/shipment", self._canonical(ctx, partner, reference))
        values = dict(payload.values)
        if ctx.dry_run:
            return StepResult(
                outcome="sent",
                contract_version=payload.contract,
                preview=[
                    {
                        "target": "easypost",
                        "call": "shipments.create",
                        "contract": payload.contract,
                        "values": values,
                    }
                ],
            )

        easypost = ctx.targets.easypost
        shipment = self._lookup(ctx, chain, reference) if retrying(ctx, self, msg, attempt) else None
        found = shipment is not None
        if shipment is None:
            with writing(payload.contract):
                easypost.verify_address(dict(values["to_address"]))
                shipment = easypost.create_shipment(**values)
        if not _bought(shipment):
            if found and not shipment.get("rates"):
                # A shipment found by reference may come without its rates (docs/SOURCES.md §4.6): rate it again.
                shipment = {**shipment, "rates": easypost.rerate(str(shipment["id"]))}
            choice = ctx.policy.rate
            by_name = choice.choose == "named"
            with writing(payload.contract):
                rate = select_rate(
                    shipment,
                    carrier=choice.carrier if by_name else None,
                    service=choice.service if by_name else None,
                )
                shipment = easypost.buy(str(shipment["id"]), str(rate["id"]))
        label = shipment.get("postage_label") or {}
        tracking_code = shipment.get("tracking_code")
        selected = shipment.get("selected_rate") or {}
        tracker = shipment.get("tracker") or {}
        status = tracker.get("status") or shipment.get("status") or "unknown"
        ids = {
            "deal_id": str(chain.get("deal_id") or msg.chain_id),
            "order_id": order_id,
            "shipment_id": shipment["id"],
            "carrier": selected.get("carrier"),
            "generation": generation,
        }
        key = f"label.bought:{msg.chain_id}{suffix(generation)}"
        return StepResult(
            outcome="found" if found else "sent",
            target_id=str(shipment["id"]),
            target_ref=str(tracking_code or ""),
            contract_version=payload.contract,
            chain_updates={
                "status": "labelled",
                "shipment_id": str(shipment["id"]),
                "tracking_code": tracking_code,
                "label_url": label.get("label_url"),
                "shipment_status": status,
                **named,
            },
            follow_ups=[
                ("label.bought", "odoo_tracking", f"{key}:odoo_tracking", ids),
                ("label.bought", "hubspot_writeback", f"{key}:hubspot_writeback", ids),
            ],
        )

    def _lookup(self, ctx: StepContext, chain: Mapping[str, Any], reference: str) -> dict[str, Any] | None:
        """The chain's shipment, by reference (an earlier attempt may have created or bought it)."""
        since = aware(chain.get("won_at")) or aware(chain.get("updated_at")) or ctx.now()
        return ctx.targets.easypost.find_shipment_by_reference(
            reference, created_after=since - _LOOKUP_MARGIN
        )

    def _cancelled(
        self, ctx: StepContext, msg: OutboxMessage, attempt: int, chain: Mapping[str, Any], reference: str
    ) -> StepResult:
        """The order is cancelled: no label. Unless an earlier attempt bought one before the cancel was seen
        (it died after the call): then the label is recorded, and compensation refunds it or holds it."""
        if not ctx.dry_run and retrying(ctx, self, msg, attempt):
            shipment = self._lookup(ctx, chain, reference)
            if shipment is not None and _bought(shipment):
                return StepResult(
                    outcome="found",
                    target_id=str(shipment["id"]),
                    target_ref=str(shipment.get("tracking_code") or ""),
                    chain_updates={
                        "status": "labelled",
                        "shipment_id": str(shipment["id"]),
                        "tracking_code": shipment.get("tracking_code"),
                        "label_url": (shipment.get("postage_label") or {}).get("label_url"),
                    },
                )
        return StepResult(outcome="skipped", chain_updates={"status": "cancelled"})

    def _paid(self, ctx: StepContext, chain: Mapping[str, Any], order: Mapping[str, Any]) -> bool:
        """A succeeded Stripe payment carries the order in ``metadata.order_id``: its Odoo name, id or deal."""
        keys = {
            str(k) for k in (order.get("name"), order.get("id"), chain.get("deal_id")) if k not in (None, "")
        }
        p = payments.c
        with ctx.engine.connect() as conn:
            hit = conn.execute(
                sa.select(p.source_id).where(p.order_id.in_(sorted(keys)), p.status.in_(_PAID)).limit(1)
            ).first()
        return hit is not None

    def _canonical(self, ctx: StepContext, partner: Mapping[str, Any], reference: str) -> dict[str, Any]:
        to_address = {
            "name": partner.get("name"),
            "company": partner.get("name"),
            "street1": partner.get("street"),
            "street2": partner.get("street2"),
            "city": partner.get("city"),
            "state": partner.get("state_code") or partner.get("state"),
            "zip": partner.get("zip"),
            "country": partner.get("country_code"),
            "email": partner.get("email"),
            "phone": partner.get("phone"),
        }
        return {
            "to_address": {k: v for k, v in to_address.items() if v not in (None, False, "")},
            "from_address": ctx.policy.from_address.model_dump(exclude_none=True),
            "parcel": ctx.policy.parcel.model_dump(),
            "reference": reference,
            "options": {},
        }


def _bought(shipment: Mapping[str, Any]) -> bool:
    return bool(
        shipment.get("postage_label") or shipment.get("selected_rate") or shipment.get("tracking_code")
    )
