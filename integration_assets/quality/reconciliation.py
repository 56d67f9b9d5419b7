"""Reconciliation across systems: does the CRM agree with the ERP, and the ERP with the payments?

- ``deals_orders``: every HubSpot closed-won deal (``deals.is_closed_won``) has a confirmed Odoo sales order
  (state in ``confirmed_states``), linked by ``sales_orders.client_order_ref`` (Odoo "Customer Reference")
  ``= deals.source_id`` (the HubSpot deal id); every confirmed order that carries a reference points at a
  closed-won deal. Orders without a reference (not created from the CRM) are counted, not mismatched.
- ``customers_companies``: every Odoo customer with ``is_company`` is linked from a HubSpot company
  (``companies.odoo_partner_id = customers.source_id``), and every link points at an Odoo company.
- ``invoices_payments``: posted Odoo customer invoices net of credit notes vs Stripe succeeded payments net
  of refunds, totals per day and currency. The ``payments`` table arrives with the Stripe connector; until then the check is skipped with
  "payments table not present yet" (a skip, never a pass).

Unmatched keys are returned in the outcome's metadata (first 50) and written to ``reconciliation_mismatches``,
replacing that check's previous rows in the caller's transaction. Details carry ids, states, dates and
amounts only: names and e-mails are personal data and stay out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from integration_assets.policies import Policies
from integration_assets.quality.mismatches import (
    Mismatch,
    mismatch_outcome,
    money_text,
    replace_mismatches,
    when_text,
)
from integration_assets.quality.outcome import CheckOutcome, aware, utcnow
from integration_assets.warehouse.schema import (
    companies,
    customers,
    deals,
    invoices,
    sales_orders,
)

# Stripe "Zero-decimal currencies" (docs.stripe.com/currencies#zero-decimal): amounts are already whole units.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    }
)


# -- HubSpot deals vs Odoo orders ---------------------------------------------------------------------------


def deals_orders(
    conn: sa.Connection, policies: Policies, *, run_id: str | None = None, now: datetime | None = None
) -> CheckOutcome:
    """Closed-won deals without a confirmed order, and confirmed orders referencing no closed-won deal."""
    name = "reconcile_deals_orders"
    states = list(policies.reconciliation.deals_orders.confirmed_states)
    d, o = deals.c, sales_orders.c
    won = sa.and_(d.is_closed_won.is_(True), d.archived_at.is_(None))  # a deal deleted in HubSpot is not won
    has_ref = sa.and_(o.client_order_ref.is_not(None), o.client_order_ref != "")
    mismatches: list[Mismatch] = []

    deals_without_order = conn.execute(
        sa.select(d.source_id, d.stage, d.amount, d.close_date)
        .where(won, ~sa.exists().where(o.client_order_ref == d.source_id, o.state.in_(states)))
        .order_by(d.source_id)
    ).all()
    for r in deals_without_order:
        others = conn.execute(sa.select(o.source_id, o.state).where(o.client_order_ref == r.source_id)).all()
        detail = {
            "deal_id": r.source_id,
            "stage": r.stage,
            "amount": money_text(r.amount),
            "close_date": when_text(r.close_date),
            "reason": "closed-won deal has no confirmed sales order",
        }
        if others:
            detail["orders_in_other_states"] = [{"order_id": i, "state": s} for i, s in others]
        mismatches.append(Mismatch(r.source_id, "hubspot", detail))

    orders_without_deal = conn.execute(
        sa.select(o.source_id, o.name, o.client_order_ref, o.state, o.amount_total, o.currency)
        .where(o.state.in_(states), has_ref, ~sa.exists().where(d.source_id == o.client_order_ref, won))
        .order_by(o.source_id)
    ).all()
    for order in orders_without_deal:
        deal = conn.execute(sa.select(d.stage).where(d.source_id == order.client_order_ref)).first()
        reason = (
            ("deal exists but is not closed-won (stage " + str(deal.stage) + ")")
            if deal
            else "no such HubSpot deal"
        )
        mismatches.append(
            Mismatch(
                order.source_id,
                "odoo",
                {
                    "order_id": order.source_id,
                    "order": order.name,
                    "client_order_ref": order.client_order_ref,
                    "state": order.state,
                    "amount_total": money_text(order.amount_total),
                    "currency": order.currency,
                    "reason": reason,
                },
            )
        )

    counts = {
        "closed_won_deals": int(conn.execute(sa.select(sa.func.count()).where(won)).scalar_one()),
        "confirmed_orders": int(
            conn.execute(sa.select(sa.func.count()).where(o.state.in_(states))).scalar_one()
        ),
        "confirmed_orders_without_reference": int(
            conn.execute(sa.select(sa.func.count()).where(o.state.in_(states), ~has_ref)).scalar_one()
        ),
    }
    replace_mismatches(conn, name, mismatches, run_id=run_id, now=now)
    return mismatch_outcome(
        name,
        policies,
        mismatches,
        f"All {counts['closed_won_deals']} closed-won deals have a confirmed order and every referenced order "
        "points at a closed-won deal.",
        f"{len(deals_without_order)} closed-won deal(s) without a confirmed Odoo order, "
        f"{len(orders_without_deal)} confirmed order(s) referencing no closed-won deal "
        "(link: sales_orders.client_order_ref = deals.source_id).",
        link="sales_orders.client_order_ref = deals.source_id",
        confirmed_states=states,
        **counts,
    )


# -- Odoo customers vs HubSpot companies --------------------------------------------------------------------


def customers_companies(
    conn: sa.Connection, policies: Policies, *, run_id: str | None = None, now: datetime | None = None
) -> CheckOutcome:
    """Odoo companies no HubSpot company links to, and HubSpot links to no Odoo company."""
    name = "reconcile_customers_companies"
    cu, co = customers.c, companies.c
    is_company = sa.and_(cu.is_company.is_(True), sa.or_(cu.active.is_(None), cu.active.is_(True)))
    live = co.archived_at.is_(None)  # companies deleted in HubSpot neither link nor need a link
    linked = sa.and_(co.odoo_partner_id.is_not(None), co.odoo_partner_id != "")
    mismatches: list[Mismatch] = []

    for r in conn.execute(
        sa.select(cu.source_id, cu.country)
        .where(is_company, ~sa.exists().where(co.odoo_partner_id == cu.source_id, live))
        .order_by(cu.source_id)
    ):
        mismatches.append(
            Mismatch(
                r.source_id,
                "odoo",
                {
                    "partner_id": r.source_id,
                    "country": r.country,
                    "reason": "Odoo company not linked from any HubSpot company (Odoo Partner ID)",
                },
            )
        )

    for company in conn.execute(
        sa.select(co.source_id, co.odoo_partner_id, co.domain)
        .where(linked, live, ~sa.exists().where(cu.source_id == co.odoo_partner_id, is_company))
        .order_by(co.source_id)
    ):
        exists = conn.execute(
            sa.select(cu.is_company, cu.active).where(cu.source_id == company.odoo_partner_id)
        ).first()
        if exists is None:
            reason = "Odoo Partner ID does not exist in Odoo"
        elif not exists.is_company:
            reason = "Odoo partner is an individual, not a company"
        else:
            reason = "Odoo partner is archived"
        mismatches.append(
            Mismatch(
                company.source_id,
                "hubspot",
                {
                    "company_id": company.source_id,
                    "odoo_partner_id": company.odoo_partner_id,
                    "domain": company.domain,
                    "reason": reason,
                },
            )
        )

    unlinked = int(
        conn.execute(sa.select(sa.func.count()).select_from(companies).where(~linked, live)).scalar_one()
    )
    if policies.reconciliation.customers_companies.require_link_for_every_company:
        for (cid,) in conn.execute(sa.select(co.source_id).where(~linked, live).order_by(co.source_id)):
            mismatches.append(Mismatch(cid, "hubspot", {"company_id": cid, "reason": "no Odoo Partner ID"}))
    counts = {
        "odoo_companies": int(conn.execute(sa.select(sa.func.count()).where(is_company)).scalar_one()),
        "hubspot_companies": int(
            conn.execute(sa.select(sa.func.count()).select_from(companies).where(live)).scalar_one()
        ),
        "hubspot_companies_without_link": unlinked,
    }
    replace_mismatches(conn, name, mismatches, run_id=run_id, now=now)
    odoo_side = sum(m.side == "odoo" for m in mismatches)
    return mismatch_outcome(
        name,
        policies,
        mismatches,
        f"All {counts['odoo_companies']} Odoo companies are linked from HubSpot and every link resolves "
        f"({unlinked} HubSpot companies have no Odoo Partner ID: prospects).",
        f"{odoo_side} Odoo compan(ies) not linked from HubSpot, {len(mismatches) - odoo_side} HubSpot "
        "compan(ies) linking to no Odoo company (link: companies.odoo_partner_id = customers.source_id).",
        link="companies.odoo_partner_id = customers.source_id",
        **counts,
    )


# -- Odoo invoices vs Stripe payments -----------------------------------------------------------------------


def _day(v: Any) -> date | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return aware(v).date()  # type: ignore[union-attr]
    if isinstance(v, date):
        return v
    text = str(v)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date() if text else None


def invoices_payments(
    conn: sa.Connection, policies: Policies, *, run_id: str | None = None, now: datetime | None = None
) -> CheckOutcome:
    """Per day and currency: posted invoices net of credit notes vs succeeded payments net of refunds
    (skipped without payments)."""
    name = "reconcile_invoices_payments"
    pol = policies.reconciliation.invoices_payments
    now = now or utcnow()
    inspector = sa.inspect(conn)
    if not inspector.has_table(pol.payments_table):
        replace_mismatches(conn, name, [], run_id=run_id, now=now)
        return CheckOutcome.skip(
            f"{pol.payments_table} table not present yet (it arrives with the Stripe connector)",
            payments_table=pol.payments_table,
        )
    payments = sa.Table(pol.payments_table, sa.MetaData(), autoload_with=conn)
    wanted = {
        pol.amount_column,
        pol.currency_column,
        pol.status_column,
        pol.date_column,
        *pol.filters,
        *pol.refund_filters,
    }
    missing = sorted(wanted - set(payments.c.keys()))
    if missing:
        replace_mismatches(conn, name, [], run_id=run_id, now=now)
        return CheckOutcome.skip(
            f"{pol.payments_table} lacks the configured column(s) {missing} "
            "(reconciliation.invoices_payments in the policies)",
            payments_table=pol.payments_table,
        )
    since = (now - pol.lookback).date()
    p = payments.c
    # Signed amounts per (day, currency): payments count +, refunds - (money going back).
    pay: dict[tuple[date, str], list[Decimal]] = defaultdict(list)
    n_refunds = 0
    for sign, filters in ((1, pol.filters), (-1, pol.refund_filters)):
        if sign < 0 and not filters:
            continue  # no refund filter configured: refunds are not told apart, so none is subtracted
        for when, cur, amount in conn.execute(
            sa.select(p[pol.date_column], p[pol.currency_column], p[pol.amount_column]).where(
                p[pol.status_column].in_(pol.succeeded_values),
                *(p[col].in_(values) for col, values in filters.items()),
            )
        ):
            day = _day(when)
            if day is None or day < since or amount is None:
                continue
            currency = str(cur or "").upper()
            minor = pol.amount_in_minor_units and currency not in ZERO_DECIMAL_CURRENCIES
            pay[(day, currency)].append(sign * Decimal(str(amount)) / (100 if minor else 1))
            n_refunds += sign < 0
    if not pay:
        replace_mismatches(conn, name, [], run_id=run_id, now=now)
        return CheckOutcome.skip(
            "no succeeded payments in the lookback window yet", lookback_days=pol.lookback.days
        )
    first_day = min(day for day, _ in pay)
    i = invoices.c
    inv: dict[tuple[date, str], list[Decimal]] = defaultdict(list)
    n_credits = 0
    for when, cur, amount, move_type in conn.execute(
        sa.select(i.invoice_date, i.currency, i.amount_total, i.move_type).where(
            i.state == "posted", i.move_type.in_((*pol.invoice_move_types, *pol.credit_move_types))
        )
    ):
        day = _day(when)
        if day is None or day < first_day or amount is None:
            continue
        credit = move_type in pol.credit_move_types
        inv[(day, str(cur or "").upper())].append(
            -abs(Decimal(str(amount))) if credit else Decimal(str(amount))
        )
        n_credits += credit
    tolerance = Decimal(str(pol.tolerance))
    mismatches = []
    for key in sorted(set(pay) | set(inv)):
        a, b = sum(inv.get(key, []), Decimal(0)), sum(pay.get(key, []), Decimal(0))
        if abs(a - b) <= tolerance:
            continue
        side = "odoo" if key not in pay else "stripe" if key not in inv else "both"
        mismatches.append(
            Mismatch(
                f"{key[0].isoformat()}/{key[1]}",
                side,
                {
                    "day": key[0].isoformat(),
                    "currency": key[1],
                    "invoices_total": money_text(a),
                    "payments_total": money_text(b),
                    "difference": money_text(a - b),
                    "invoices": len(inv.get(key, [])),
                    "payments": len(pay.get(key, [])),
                },
            )
        )
    replace_mismatches(conn, name, mismatches, run_id=run_id, now=now)
    days = len(set(pay) | set(inv))
    return mismatch_outcome(
        name,
        policies,
        mismatches,
        f"Posted invoices and succeeded payments agree on all {days} day/currency pairs since {first_day}.",
        f"{len(mismatches)} of {days} day/currency pairs differ by more than {pol.tolerance} between posted "
        "invoices and succeeded payments.",
        compared_from=first_day.isoformat(),
        day_currency_pairs=days,
        refunds_subtracted=n_refunds,
        credit_notes_subtracted=n_credits,
    )
