"""Step ``odoo_order``: a won deal becomes a confirmed Odoo sale order with its stock reserved.

Partner: the company's stored link (``companies.odoo_partner_id``), else a partner this integration created
(``ref`` = ``hubspot-company:<id>``, looked up before every create), else one with the company's VAT or
domain, else a new partner. Order: looked up by ``client_order_ref`` = ``hubspot-deal:<deal id>[:<n>]`` when
the step runs again (the create may have committed in Odoo before its answer was lost) and in a dry run, else
created from the deal's HubSpot line items through the ``odoo/sale_order`` contract; then ``action_confirm``
(a no-op on a confirmed order) and ``action_assign`` (reserving twice reserves nothing more). Every sub-write
is therefore safe to repeat. Bad input (no company, no line items, an unknown SKU, a quantity not above zero,
a currency the Odoo company does not use) is permanent and names the item.

A ``deal.changed`` message (the won deal's amount moved after the order existed) never makes a second order:
policy ``amount_change`` rewrites the lines of the same order (``update``, while no label is bought) or holds
it for review (``flag``). docs/ARCHITECTURE.md, "The outbound flow".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from integration_assets.mapping.outbound import render
from integration_assets.outbound.errors import BadInput, NeedsReview
from integration_assets.outbound.steps import _reference as reference
from integration_assets.outbound.steps._chain import (
    generation_of,
    generation_sub,
    load_company,
    load_deal,
    money,
    order_ref,
    partner_ref,
    retrying,
    suffix,
    writing,
)
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult

# Odoo states in which an order may still take new lines (docs/SOURCES.md §2.6); ``done``/``cancel`` may not.
_EDITABLE_STATES = frozenset({"draft", "sent", "sale"})
# The chain's label columns, which a new generation's order clears.
_LABEL_COLUMNS = ("shipment_id", "tracking_code", "label_url", "shipment_status", "shipment_status_at")


@dataclass(frozen=True)
class _Line:
    product_id: int
    quantity: float
    price_unit: float
    name: str
    sku: str


class OdooOrderStep:
    """Deal won → partner → sale order → confirmed → stock reserved (one Odoo order per chain generation)."""

    name: str = "odoo_order"
    target = "odoo"

    def ledger_sub(self, msg: OutboxMessage) -> str:
        """A won message writes once per generation; each amount change is a write of its own."""
        base = generation_sub(msg)
        if msg.topic == "deal.changed":
            return ":".join(p for p in (base, "changed", str(msg.payload.get("amount"))) if p)
        return base

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        chain = ctx.chain(msg.chain_id)
        with ctx.engine.connect() as conn:
            deal_id = str(msg.payload.get("deal_id") or msg.chain_id)
            deal = load_deal(conn, deal_id)
            company = load_company(conn, str(deal["company_id"])) if deal and deal.get("company_id") else None
        if deal is None:
            raise BadInput(f"deal {deal_id} is not in the warehouse", field="deal_id")
        generation = generation_of(msg.payload, chain)
        if msg.topic == "deal.changed":
            return self._amount_changed(ctx, msg, chain, deal)
        # A dry run looks up too (reads are allowed): its preview is the write a real run would make.
        again = ctx.dry_run or retrying(ctx, self, msg, attempt)
        ref = order_ref(deal_id, generation)
        odoo = ctx.targets.odoo

        order = odoo.find_order(ref) if again else None
        previews: list[dict[str, Any]] = []
        contract: str | None = None
        found = order is not None
        if order is None:
            if company is None:
                raise BadInput(
                    f"deal {deal_id} has no company: an order needs a customer", field="company_id"
                )
            partner_id, partner_preview = self._partner(ctx, company)
            previews.extend(partner_preview)
            lines, currency = self._lines(ctx, deal_id)
            payload = render(
                "odoo/sale_order",
                self._canonical(ctx, deal, partner_id or 0, ref, lines, currency),
            )
            contract = payload.contract
            if ctx.dry_run:
                previews.append(
                    {
                        "target": "odoo",
                        "call": "sale.order.create",
                        "contract": contract,
                        "values": payload.values,
                    }
                )
                return StepResult(outcome="sent", contract_version=contract, preview=previews)
            with writing(contract):
                order_id = odoo.create_order(payload.values)
            # Not read back: the label step's live read of the order records its name (one Odoo call less).
            order = {"id": order_id, "state": "draft", "name": None}
        else:
            partner_id = int(order["partner_id"])
            currency = order.get("currency")

        order_id = int(order["id"])
        if order.get("state") == "cancel":
            # Cancelled in Odoo before this step finished: no confirmation and no label; compensation is moot.
            return StepResult(
                outcome="skipped",
                target_id=str(order_id),
                target_ref=str(order.get("name") or ""),
                chain_updates={
                    "status": "cancelled",
                    "order_id": str(order_id),
                    "order_name": order.get("name"),
                },
            )
        if ctx.dry_run:
            return StepResult(
                outcome="found", target_id=str(order_id), target_ref=str(order.get("name") or "")
            )
        odoo.confirm_order(order_id)
        pickings = odoo.reserve_stock(
            order_id
        )  # the delivery exists once confirmed; the name was set at create
        fresh: dict[str, Any] = {}
        if chain is not None and int(chain.get("generation") or 1) != generation:
            # A new generation (rewin: new_order) starts with no label of its own.
            fresh = dict.fromkeys(_LABEL_COLUMNS)
        return StepResult(
            outcome="found" if found else "sent",
            target_id=str(order_id),
            target_ref=str(order.get("name") or ""),
            contract_version=contract,
            chain_updates={
                "status": "ordered",
                "generation": generation,
                "deal_id": deal_id,
                "partner_id": str(partner_id),
                "order_id": str(order_id),
                **({"order_name": order["name"]} if order.get("name") else {}),
                "picking_ids": sorted(int(p) for p in (pickings or order.get("picking_ids") or [])),
                "amount_at_order": money(deal.get("amount")),
                "currency": currency or order.get("currency"),
                **fresh,
            },
            follow_ups=[
                (
                    "order.confirmed",
                    "easypost_label",
                    f"order.confirmed:{msg.chain_id}{suffix(generation)}",
                    {"deal_id": deal_id, "order_id": order_id, "generation": generation},
                )
            ],
        )

    # -- partner -------------------------------------------------------------------------------------------
    def _partner(
        self, ctx: StepContext, company: Mapping[str, Any]
    ) -> tuple[int | None, list[dict[str, Any]]]:
        """The Odoo partner of the deal's company: stored link, ours by ref, domain/VAT match, else created."""
        company_id = str(company["source_id"])
        ref = partner_ref(company_id)
        linked = str(company.get("odoo_partner_id") or "")
        # One lookup, in the writer's order: the stored link, a partner created for this company earlier (this
        # chain's lost answer, or another deal of the same company) by its ref, the VAT, the website domain.
        # A read before every create, not only on a retry.
        found = ctx.targets.odoo.find_partner(
            partner_id=int(linked) if linked.isdigit() else None,
            ref=ref,
            website_domain=company.get("domain") or None,
            vat=company.get("vat") or None,
        )
        if found:
            return int(found["id"]), []
        payload = render(
            "odoo/partner",
            {
                "company_id": company_id,
                "name": company.get("name"),
                "domain": company.get("domain"),
                "ref": ref,
                "country": company.get("country"),
            },
        )
        if ctx.dry_run:
            return None, [
                {
                    "target": "odoo",
                    "call": "res.partner.create",
                    "contract": payload.contract,
                    "values": payload.values,
                }
            ]
        with writing(payload.contract):
            return ctx.targets.odoo.create_partner(payload.values), []

    # -- lines ---------------------------------------------------------------------------------------------
    def _lines(self, ctx: StepContext, deal_id: str) -> tuple[list[_Line], str | None]:
        """The deal's HubSpot line items as Odoo order lines; bad input is permanent and names the item."""
        items = ctx.targets.hubspot.deal_line_items(deal_id)
        if not items:
            raise BadInput(f"deal {deal_id} has no line items: nothing to order", field="line_items")
        parsed: list[tuple[Mapping[str, Any], str, Decimal, Decimal]] = []
        currencies: set[str] = set()
        for item in items:
            label = f"line item {item.get('id')} ({item.get('name') or 'unnamed'}) of deal {deal_id}"
            sku = str(item.get("sku") or "").strip()
            if not sku:
                raise BadInput(f"{label} has no SKU", field="hs_sku")
            quantity = _decimal(item.get("quantity"), f"{label}: quantity", "quantity")
            if quantity <= 0:
                raise BadInput(f"{label}: quantity {quantity} must be positive", field="quantity")
            price = _decimal(
                item.get("price") if item.get("price") not in (None, "") else 0, f"{label}: price", "price"
            )
            if price < 0:
                raise BadInput(f"{label}: price {price} is negative", field="price")
            if item.get("currency"):
                currencies.add(str(item["currency"]).upper())
            parsed.append((item, sku, quantity, price))
        if len(currencies) > 1:
            raise BadInput(
                f"deal {deal_id} mixes currencies {', '.join(sorted(currencies))} in its line items",
                field="currency",
            )
        currency = next(iter(currencies), None)
        odoo = ctx.targets.odoo
        if currency is not None:
            used, allowed = reference.company_uses(odoo, currency)
            if not used:
                raise BadInput(
                    f"deal {deal_id} is in {currency}, a currency the Odoo company does not use "
                    f"({', '.join(sorted(allowed)) or 'none'})",
                    field="currency",
                )
        codes = {sku: ctx.policy.odoo_code(sku) for _, sku, _, _ in parsed}
        products = reference.products_by_code(odoo, sorted(set(codes.values())))
        lines: list[_Line] = []
        for line_item, sku, quantity, price in parsed:
            code = codes[sku]
            if code not in products:
                shown = sku if code == sku else f"{sku} (Odoo code {code} by sku_map)"
                raise BadInput(
                    f"line item {line_item.get('id')} ({line_item.get('name') or 'unnamed'}) of deal {deal_id}: SKU {shown} "
                    f"is not an Odoo product; add it to Odoo or map it in outbound.sku_map",
                    field="hs_sku",
                )
            lines.append(
                _Line(
                    product_id=int(products[code]),
                    quantity=float(quantity),
                    price_unit=float(price),
                    name=str(line_item.get("name") or sku),
                    sku=sku,
                )
            )
        return lines, currency

    def _canonical(
        self,
        ctx: StepContext,
        deal: Mapping[str, Any],
        partner_id: int,
        ref: str,
        lines: Sequence[_Line],
        currency: str | None,
    ) -> dict[str, Any]:
        owner = deal.get("owner_id")
        return {
            "partner_id": partner_id,
            "client_order_ref": ref,
            "origin": f"HubSpot deal {deal['source_id']}",
            "deal_id": str(deal["source_id"]),
            "deal_name": deal.get("name"),
            "currency": currency,
            "user_id": ctx.policy.owner_map.get(str(owner)) if owner else None,
            "lines": [
                {
                    "product_id": ln.product_id,
                    "quantity": ln.quantity,
                    "price_unit": ln.price_unit,
                    "name": ln.name,
                    "sku": ln.sku,
                }
                for ln in lines
            ],
        }

    # -- amount change -------------------------------------------------------------------------------------
    def _amount_changed(
        self,
        ctx: StepContext,
        msg: OutboxMessage,
        chain: Mapping[str, Any] | None,
        deal: Mapping[str, Any],
    ) -> StepResult:
        """The won deal's amount moved after its order was made: update the same order or hold it for review."""
        deal_id = str(deal["source_id"])
        new_amount = money(msg.payload.get("amount", deal.get("amount")))
        if not chain or not chain.get("order_id"):
            # No order yet: the won message still on its way makes it from the current line items.
            return StepResult(outcome="skipped")
        old_amount = money(chain.get("amount_at_order"))
        if new_amount == old_amount:
            return StepResult(outcome="skipped", target_id=str(chain["order_id"]))
        what = f"deal {deal_id}: amount {old_amount} at order {chain.get('order_name')}, now {new_amount}"
        if ctx.policy.amount_change == "flag":
            raise NeedsReview(
                f"{what}; policy amount_change flag holds it for review", check_name="amount_changed"
            )
        odoo = ctx.targets.odoo
        order_id = int(chain["order_id"])
        order = odoo.read_order(order_id)
        if order.get("state") not in _EDITABLE_STATES or chain.get("shipment_id"):
            raise NeedsReview(
                f"{what}; the order is {order.get('state')}"
                f"{' and its label is bought' if chain.get('shipment_id') else ''}, so it cannot be updated",
                check_name="amount_changed",
            )
        lines, currency = self._lines(ctx, deal_id)
        generation = generation_of(msg.payload, chain)
        payload = render(
            "odoo/sale_order",
            self._canonical(
                ctx, deal, int(order["partner_id"]), order_ref(deal_id, generation), lines, currency
            ),
        )
        values = {"order_line": _line_commands(odoo, order, payload.values.get("order_line") or [])}
        if ctx.dry_run:
            return StepResult(
                outcome="updated",
                contract_version=payload.contract,
                preview=[
                    {
                        "target": "odoo",
                        "call": "sale.order.write",
                        "contract": payload.contract,
                        "values": values,
                    }
                ],
            )
        with writing(payload.contract):
            odoo.write_order(order_id, values)
        odoo.reserve_stock(order_id)
        return StepResult(
            outcome="updated",
            target_id=str(order_id),
            target_ref=str(order.get("name") or ""),
            contract_version=payload.contract,
            chain_updates={"amount_at_order": new_amount},
        )


def _line_commands(odoo: Any, order: Mapping[str, Any], rendered: Sequence[Any]) -> list[list[Any]]:
    """x2many commands that make the order's lines the rendered ones without removing a line: Odoo refuses to
    remove a line of a confirmed order and to change a line's product (docs/SOURCES.md §2.5-2.6), so a line of
    the same product is updated in place (``[1, id, {qty, price}]``), a new product is added (``[0, 0, vals]``)
    and a line that went away is set to quantity 0."""
    existing = odoo.read("sale.order.line", list(order.get("order_line") or []), ["product_id"])
    free: dict[int, list[int]] = {}
    for row in existing:
        product = row.get("product_id")
        pid = product[0] if isinstance(product, list) and product else product
        free.setdefault(int(pid), []).append(int(row["id"]))
    commands: list[list[Any]] = []
    for command in rendered:
        vals = dict(command[2])
        same = free.get(int(vals["product_id"])) or []
        if same:
            commands.append(
                [1, same.pop(0), {k: vals[k] for k in ("product_uom_qty", "price_unit") if k in vals}]
            )
        else:
            commands.append([0, 0, vals])
    commands.extend([1, line_id, {"product_uom_qty": 0}] for ids in free.values() for line_id in ids)
    return commands


def _decimal(value: Any, what: str, field: str) -> Decimal:
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise BadInput(f"{what} {value!r} is not a number", field=field) from None
