"""Canonical pandera models: the shape every source is mapped into, one per warehouse table.

Checks here are the ones that hold whatever the source (keys present, amounts non-negative, currencies
ISO-4217 shaped, Odoo technical states). Source-specific vocabularies (HubSpot lifecycle stages, deal stages)
are owned by the mapping contracts, so adding a dropdown value is a contract change, not a model change.
"""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# The lineage columns (warehouse.schema.LINEAGE_COLUMNS), for the data dictionary.
LINEAGE_DOCS = {
    "source_system": "System the row came from (hubspot, odoo). Part of the natural key.",
    "mapping_version": "Contract version that produced the row, e.g. hubspot.contacts.csv@v1.",
    "load_id": "Load (file or replay) that last wrote the row; see the loads ledger.",
    "row_hash": "64-bit hash of the mapped business columns; a replay compares it to skip unchanged rows.",
}

# Arrow-backed strings: the readers produce them, and pandera checks them several times faster.
Str = Series[Annotated[pd.StringDtype, "pyarrow", pd.NA]]
Money = Series[float]
Timestamp = Series[Annotated[pd.DatetimeTZDtype, "ns", "UTC"]]
Boolean = Series[pd.BooleanDtype]

_SLUG = r"^[a-z0-9_]+$"
_CURRENCY = r"^[A-Z]{3}$"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _key(description: str) -> Any:
    return pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 64}, description=description)


def _updated() -> Any:
    return pa.Field(
        nullable=False, description="When the source last changed the record (UTC); last writer wins."
    )


class _Canonical(pa.DataFrameModel):
    class Config:
        strict = True  # a mapped frame with an extra or missing column is a bug in a contract
        coerce = False  # the mapping engine parses; pandera only checks


class Contact(_Canonical):
    """A person in the CRM (HubSpot contact)."""

    source_id: Str = _key("HubSpot Record ID (hs_object_id).")
    source_updated_at: Timestamp = _updated()
    email: Str = pa.Field(nullable=True, str_matches=_EMAIL, description="Primary email, lower-cased. PII.")
    first_name: Str = pa.Field(nullable=True, description="First name. PII.")
    last_name: Str = pa.Field(nullable=True, description="Last name. PII.")
    phone: Str = pa.Field(nullable=True, description="Phone number as entered. PII.")
    lifecycle_stage: Str = pa.Field(
        nullable=True, str_matches=_SLUG, description="Lifecycle stage, internal value (lead, customer, …)."
    )
    lead_status: Str = pa.Field(nullable=True, str_matches=_SLUG, description="Lead status, internal value.")
    company_id: Str = pa.Field(nullable=True, description="HubSpot id of the primary associated company.")
    country: Str = pa.Field(nullable=True, description="Country/region as entered.")
    created_at: Timestamp = pa.Field(
        nullable=True, description="When the contact was created in HubSpot (UTC)."
    )
    archived_at: Timestamp = pa.Field(
        nullable=True,
        description="When HubSpot deleted (archived) the record (UTC); null while it exists. Set by a deletion webhook or an API record pulled with archived=true, cleared by a restore.",
    )
    erased_at: Timestamp = pa.Field(
        nullable=True,
        description="When the contact's personal data was erased (GDPR; contact.privacyDeletion or `integration-assets privacy erase`); its personal columns (email, names, phone) stay null from then on, whatever later loads carry.",
    )


class Company(_Canonical):
    """An organisation in the CRM (HubSpot company)."""

    source_id: Str = _key("HubSpot Record ID of the company.")
    source_updated_at: Timestamp = _updated()
    name: Str = pa.Field(nullable=True, description="Company name.")
    domain: Str = pa.Field(nullable=True, description="Primary web domain, lower-cased.")
    industry: Str = pa.Field(
        nullable=True,
        str_matches=r"^[A-Z0-9_]+$",
        description="Industry, HubSpot internal value (e.g. COMPUTER_SOFTWARE).",
    )
    country: Str = pa.Field(nullable=True, description="Country/region.")
    odoo_partner_id: Str = pa.Field(
        nullable=True, description="Odoo res.partner id of the same company; the CRM↔ERP link."
    )
    created_at: Timestamp = pa.Field(
        nullable=True, description="When the company was created in HubSpot (UTC)."
    )
    archived_at: Timestamp = pa.Field(
        nullable=True,
        description="When HubSpot deleted (archived) the record (UTC); null while it exists. Set by a deletion webhook or an API record pulled with archived=true, cleared by a restore.",
    )


class Deal(_Canonical):
    """A sales opportunity in the CRM (HubSpot deal)."""

    source_id: Str = _key("HubSpot Record ID of the deal.")
    source_updated_at: Timestamp = _updated()
    name: Str = pa.Field(nullable=True, description="Deal name.")
    stage: Str = pa.Field(
        nullable=True, str_matches=_SLUG, description="Deal stage, internal value (closedwon, …)."
    )
    pipeline: Str = pa.Field(nullable=True, description="Pipeline internal id (default).")
    amount: Money = pa.Field(nullable=True, ge=0, description="Deal amount in the account currency.")
    close_date: Timestamp = pa.Field(nullable=True, description="Expected or actual close date (UTC).")
    company_id: Str = pa.Field(nullable=True, description="HubSpot id of the associated company.")
    is_closed_won: Boolean = pa.Field(
        nullable=True, description="True when the stage is closed-won (derived)."
    )
    created_at: Timestamp = pa.Field(nullable=True, description="When the deal was created (UTC).")
    archived_at: Timestamp = pa.Field(
        nullable=True,
        description="When HubSpot deleted (archived) the record (UTC); null while it exists. Set by a deletion webhook or an API record pulled with archived=true, cleared by a restore.",
    )


class Customer(_Canonical):
    """A partner in the ERP (Odoo res.partner): customers, their contacts and companies."""

    source_id: Str = _key("Odoo res.partner id.")
    source_updated_at: Timestamp = _updated()
    name: Str = pa.Field(nullable=True, description="Display name. PII for individuals.")
    email: Str = pa.Field(nullable=True, str_matches=_EMAIL, description="Email, lower-cased. PII.")
    phone: Str = pa.Field(nullable=True, description="Phone (or mobile when phone is empty). PII.")
    is_company: Boolean = pa.Field(nullable=True, description="True for companies, false for individuals.")
    parent_id: Str = pa.Field(nullable=True, description="Odoo id of the parent company.")
    street: Str = pa.Field(nullable=True, description="Street address. PII.")
    city: Str = pa.Field(nullable=True, description="City.")
    zip: Str = pa.Field(nullable=True, description="Postal code.")
    country: Str = pa.Field(nullable=True, description="Country display name.")
    vat: Str = pa.Field(nullable=True, description="Tax id.")
    active: Boolean = pa.Field(nullable=True, description="False when archived in Odoo.")


class Product(_Canonical):
    """A sellable product variant in the ERP (Odoo product.product)."""

    source_id: Str = _key("Odoo product.product id.")
    source_updated_at: Timestamp = _updated()
    default_code: Str = pa.Field(nullable=True, description="Internal reference (SKU).")
    name: Str = pa.Field(nullable=True, description="Product name.")
    barcode: Str = pa.Field(nullable=True, description="EAN/UPC barcode.")
    list_price: Money = pa.Field(nullable=True, ge=0, description="Sales price.")
    standard_price: Money = pa.Field(nullable=True, ge=0, description="Cost.")
    product_type: Str = pa.Field(
        nullable=True,
        isin=["consu", "service", "product", "combo"],
        description="consu, service or product (storable).",
    )
    category: Str = pa.Field(nullable=True, description="Product category display name.")
    active: Boolean = pa.Field(nullable=True, description="False when archived.")


class SalesOrder(_Canonical):
    """A quotation or sales order in the ERP (Odoo sale.order)."""

    source_id: Str = _key("Odoo sale.order id.")
    source_updated_at: Timestamp = _updated()
    name: Str = pa.Field(nullable=True, description="Order reference, e.g. S00042.")
    customer_id: Str = pa.Field(nullable=True, description="Odoo res.partner id of the customer.")
    order_date: Timestamp = pa.Field(nullable=False, description="Order date (UTC).")
    amount_untaxed: Money = pa.Field(nullable=True, description="Untaxed amount.")
    amount_tax: Money = pa.Field(nullable=True, description="Taxes.")
    amount_total: Money = pa.Field(nullable=True, description="Total.")
    currency: Str = pa.Field(nullable=True, str_matches=_CURRENCY, description="ISO-4217 currency code.")
    state: Str = pa.Field(
        nullable=False,
        isin=["draft", "sent", "sale", "done", "cancel"],
        description="draft, sent, sale (confirmed), done (locked, Odoo 16), cancel.",
    )
    invoice_status: Str = pa.Field(
        nullable=True, isin=["upselling", "invoiced", "to invoice", "no"], description="Invoicing status."
    )
    client_order_ref: Str = pa.Field(
        nullable=True,
        description="Customer reference; holds the HubSpot deal id for CRM-originated orders (the deal↔order link).",
    )


class SalesOrderLine(_Canonical):
    """A line of a sales order (Odoo sale.order.line)."""

    source_id: Str = _key("Odoo sale.order.line id.")
    source_updated_at: Timestamp = _updated()
    order_id: Str = pa.Field(nullable=False, description="Odoo sale.order id (must exist in sales_orders).")
    product_id: Str = pa.Field(nullable=True, description="Odoo product.product id.")
    description: Str = pa.Field(nullable=True, description="Line description.")
    quantity: Money = pa.Field(nullable=True, ge=0, description="Ordered quantity (product_uom_qty).")
    qty_delivered: Money = pa.Field(nullable=True, ge=0, description="Delivered quantity.")
    qty_invoiced: Money = pa.Field(nullable=True, ge=0, description="Invoiced quantity.")
    price_unit: Money = pa.Field(nullable=True, ge=0, description="Unit price.")
    discount: Money = pa.Field(nullable=True, ge=0, le=100, description="Discount in percent.")
    price_subtotal: Money = pa.Field(nullable=True, description="Subtotal without taxes.")
    price_total: Money = pa.Field(nullable=True, description="Total with taxes.")


class Invoice(_Canonical):
    """A customer invoice, credit note or vendor bill (Odoo account.move)."""

    source_id: Str = _key("Odoo account.move id.")
    source_updated_at: Timestamp = _updated()
    name: Str = pa.Field(nullable=True, description="Invoice number, e.g. INV/2024/00012.")
    move_type: Str = pa.Field(
        nullable=False,
        isin=["entry", "out_invoice", "out_refund", "in_invoice", "in_refund", "out_receipt", "in_receipt"],
        description="Odoo move type.",
    )
    state: Str = pa.Field(
        nullable=False, isin=["draft", "posted", "cancel"], description="draft, posted, cancel."
    )
    payment_state: Str = pa.Field(
        nullable=True,
        isin=["not_paid", "in_payment", "paid", "partial", "reversed", "invoicing_legacy", "blocked"],
        description="Payment state.",
    )
    customer_id: Str = pa.Field(nullable=True, description="Odoo res.partner id.")
    invoice_date: Timestamp = pa.Field(nullable=True, description="Invoice date (midnight UTC).")
    due_date: Timestamp = pa.Field(nullable=True, description="Due date (midnight UTC).")
    amount_untaxed: Money = pa.Field(nullable=True, description="Untaxed amount.")
    amount_tax: Money = pa.Field(nullable=True, description="Taxes.")
    amount_total: Money = pa.Field(nullable=True, description="Total.")
    amount_residual: Money = pa.Field(nullable=True, description="Amount still due.")
    currency: Str = pa.Field(nullable=True, str_matches=_CURRENCY, description="ISO-4217 currency code.")
    invoice_origin: Str = pa.Field(
        nullable=True, description="Source document, usually the sales order name."
    )


CANONICAL_MODELS: dict[str, type[_Canonical]] = {
    "contacts": Contact,
    "companies": Company,
    "deals": Deal,
    "customers": Customer,
    "products": Product,
    "sales_orders": SalesOrder,
    "sales_order_lines": SalesOrderLine,
    "invoices": Invoice,
}


class Payment(_Canonical):
    """A Stripe PaymentIntent, charge or refund, as of the newest event seen for it (webhook events)."""

    source_id: Str = _key("Stripe object id: pi_…, ch_… or re_….")
    source_updated_at: Timestamp = pa.Field(
        nullable=False,
        description="`created` of the newest event applied (whole seconds, UTC) plus the status's lifecycle rank "
        "in microseconds, so that of two events in the same second the later state wins; an older event "
        "never overwrites newer state.",
    )
    object_type: Str = pa.Field(
        nullable=False,
        isin=["payment_intent", "charge", "refund"],
        description="Stripe object type: payment_intent, charge or refund.",
    )
    amount: Money = pa.Field(
        nullable=False,
        ge=0,
        description="Amount in integer minor units (cents; yen for JPY), as Stripe sends it.",
    )
    amount_refunded: Money = pa.Field(
        nullable=True, ge=0, description="Charges: amount refunded so far, minor units."
    )
    currency: Str = pa.Field(
        nullable=False, str_matches=_CURRENCY, description="ISO-4217 currency code, upper-cased."
    )
    status: Str = pa.Field(
        nullable=False,
        str_matches=_SLUG,
        description="Stripe status of the object (succeeded, processing, requires_action, failed, …).",
    )
    customer_id: Str = pa.Field(
        nullable=True,
        description="Stripe customer id (cus_…); a soft link, the customer need not be in the warehouse.",
    )
    payment_intent_id: Str = pa.Field(
        nullable=True, description="Charges and refunds: the PaymentIntent (pi_…)."
    )
    charge_id: Str = pa.Field(
        nullable=True, description="PaymentIntents: latest charge; refunds: the refunded charge."
    )
    order_id: Str = pa.Field(
        nullable=True,
        description="Odoo sale.order this payment is for, from "
        "metadata.order_id (the payment↔order link; may be unknown).",
    )
    invoice_id: Str = pa.Field(
        nullable=True, description="Odoo account.move this payment settles, from metadata.invoice."
    )
    refund_reason: Str = pa.Field(
        nullable=True,
        str_matches=_SLUG,
        description="Refunds: duplicate, fraudulent, requested_by_customer, ….",
    )
    livemode: Boolean = pa.Field(nullable=True, description="False for Stripe test-mode objects.")
    created_at: Timestamp = pa.Field(nullable=True, description="When Stripe created the object (UTC).")
    event_id: Str = pa.Field(nullable=False, description="Stripe event (evt_…) that last wrote the row.")
    event_type: Str = pa.Field(
        nullable=False, description="Type of that event, e.g. payment_intent.succeeded."
    )

    @pa.check("amount", "amount_refunded", name="whole_minor_units")
    def _whole(cls, s: pd.Series) -> pd.Series:  # noqa: N805 - pandera passes the model class
        return s.isna() | (s % 1 == 0)


class ShipmentEvent(_Canonical):
    """The latest tracking status of each EasyPost tracker (one row per tracker, from tracker.* events)."""

    source_id: Str = _key("EasyPost tracker id (trk_…).")
    source_updated_at: Timestamp = pa.Field(
        nullable=False,
        description="The tracker's updated_at in the newest event applied (UTC) plus the status's rank in "
        "microseconds; an older event never overwrites newer state.",
    )
    tracking_code: Str = pa.Field(
        nullable=False, str_length={"min_value": 1, "max_value": 64}, description="Carrier tracking number."
    )
    carrier: Str = pa.Field(nullable=True, description="Carrier, e.g. USPS, FedEx.")
    status: Str = pa.Field(
        nullable=False,
        str_matches=_SLUG,
        description="pre_transit, in_transit, out_for_delivery, delivered, return_to_sender, failure, ….",
    )
    status_detail: Str = pa.Field(nullable=True, description="Finer status, e.g. arrived_at_facility.")
    previous_status: Str = pa.Field(
        nullable=True, description="Status before this event (previous_attributes.status)."
    )
    est_delivery_date: Timestamp = pa.Field(nullable=True, description="Carrier's estimated delivery (UTC).")
    shipment_id: Str = pa.Field(
        nullable=True, description="EasyPost shipment (shp_…) the tracker belongs to, if any."
    )
    mode: Str = pa.Field(
        nullable=True, isin=["test", "production"], description="EasyPost mode: test or production."
    )
    created_at: Timestamp = pa.Field(nullable=True, description="When the tracker was created (UTC).")
    event_id: Str = pa.Field(nullable=False, description="EasyPost event (evt_…) that last wrote the row.")
    event_type: Str = pa.Field(nullable=False, description="Its description, e.g. tracker.updated.")


CANONICAL_MODELS.update({"payments": Payment, "shipment_events": ShipmentEvent})
