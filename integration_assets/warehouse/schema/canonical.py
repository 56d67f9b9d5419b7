"""Canonical tables: one per entity, mirroring the pandera models in ``integration_assets.contracts.models``
column for column (a test keeps them in sync). Every canonical row carries the lineage columns below and is
keyed by (source_system, source_id).
"""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import MONEY, TS, key_string, metadata

# Written by the engine and the writer, not by a contract; outside the row hash.
LINEAGE_COLUMNS = frozenset({"source_system", "mapping_version", "load_id", "row_hash"})
# Nullable columns added after rows and contracts existed: a contract may leave them out (null), and they stay
# outside the row hash (they change only with a newer source_updated_at), so existing rows keep their hash.
LATE_COLUMNS = frozenset({"archived_at", "erased_at"})


def _lineage() -> list[sa.Column]:
    return [
        sa.Column("source_system", key_string(32), nullable=False),
        sa.Column("source_id", key_string(64), nullable=False),
        sa.Column("source_updated_at", TS, nullable=False),
        sa.Column("mapping_version", sa.String(64), nullable=False),
        sa.Column("load_id", sa.String(64), nullable=False),
        # 64-bit hash of the mapped business columns: lets a replay detect "unchanged" without comparing columns.
        sa.Column("row_hash", sa.BigInteger, nullable=False),
    ]


def _canonical(name: str, *columns: sa.Column | sa.Index) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        *_lineage(),
        *columns,
        sa.PrimaryKeyConstraint("source_system", "source_id"),
    )


contacts = _canonical(
    "contacts",
    sa.Column("email", sa.String(320)),
    sa.Column("first_name", sa.String(255)),
    sa.Column("last_name", sa.String(255)),
    sa.Column("phone", sa.String(64)),
    sa.Column("lifecycle_stage", sa.String(64)),
    sa.Column("lead_status", sa.String(64)),
    sa.Column("company_id", sa.String(64)),
    sa.Column("country", sa.String(128)),
    sa.Column("created_at", TS),
    sa.Column("archived_at", TS),
    sa.Column("erased_at", TS),  # GDPR erasure (integration_assets.privacy): personal columns nulled for good
)

companies = _canonical(
    "companies",
    sa.Column("name", sa.String(255)),
    sa.Column("domain", sa.String(255)),
    sa.Column("industry", sa.String(128)),
    sa.Column("country", sa.String(128)),
    sa.Column("odoo_partner_id", sa.String(64)),
    sa.Column("created_at", TS),
    sa.Column("archived_at", TS),
)

deals = _canonical(
    "deals",
    sa.Column("name", sa.String(255)),
    sa.Column("stage", sa.String(64)),
    sa.Column("pipeline", sa.String(64)),
    sa.Column("amount", MONEY),
    sa.Column("close_date", TS),
    sa.Column("company_id", sa.String(64)),
    sa.Column("is_closed_won", sa.Boolean),
    sa.Column("created_at", TS),
    sa.Column("archived_at", TS),
)

customers = _canonical(
    "customers",
    sa.Column("name", sa.String(255)),
    sa.Column("email", sa.String(320)),
    sa.Column("phone", sa.String(64)),
    sa.Column("is_company", sa.Boolean),
    sa.Column("parent_id", sa.String(64)),
    sa.Column("street", sa.String(255)),
    sa.Column("city", sa.String(128)),
    sa.Column("zip", sa.String(32)),
    sa.Column("country", sa.String(128)),
    sa.Column("vat", sa.String(64)),
    sa.Column("active", sa.Boolean),
)

products = _canonical(
    "products",
    sa.Column("default_code", sa.String(64)),
    sa.Column("name", sa.String(255)),
    sa.Column("barcode", sa.String(64)),
    sa.Column("list_price", MONEY),
    sa.Column("standard_price", MONEY),
    sa.Column("product_type", sa.String(32)),
    sa.Column("category", sa.String(255)),
    sa.Column("active", sa.Boolean),
)

sales_orders = _canonical(
    "sales_orders",
    sa.Column("name", sa.String(64)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("order_date", TS),
    sa.Column("amount_untaxed", MONEY),
    sa.Column("amount_tax", MONEY),
    sa.Column("amount_total", MONEY),
    sa.Column("currency", sa.String(3)),
    sa.Column("state", sa.String(32)),
    sa.Column("invoice_status", sa.String(32)),
    sa.Column("client_order_ref", sa.String(64)),
)

sales_order_lines = _canonical(
    "sales_order_lines",
    sa.Column("order_id", sa.String(64)),
    sa.Column("product_id", sa.String(64)),
    sa.Column("description", sa.Text),
    sa.Column("quantity", sa.Numeric(18, 4)),
    sa.Column("qty_delivered", sa.Numeric(18, 4)),
    sa.Column("qty_invoiced", sa.Numeric(18, 4)),
    sa.Column("price_unit", MONEY),
    sa.Column("discount", sa.Numeric(9, 4)),
    sa.Column("price_subtotal", MONEY),
    sa.Column("price_total", MONEY),
)

invoices = _canonical(
    "invoices",
    sa.Column("name", sa.String(64)),
    sa.Column("move_type", sa.String(32)),
    sa.Column("state", sa.String(32)),
    sa.Column("payment_state", sa.String(32)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("invoice_date", TS),
    sa.Column("due_date", TS),
    sa.Column("amount_untaxed", MONEY),
    sa.Column("amount_tax", MONEY),
    sa.Column("amount_total", MONEY),
    sa.Column("amount_residual", MONEY),
    sa.Column("currency", sa.String(3)),
    sa.Column("invoice_origin", sa.String(255)),
)

CANONICAL_TABLES: dict[str, sa.Table] = {
    t.name: t
    for t in (contacts, companies, deals, customers, products, sales_orders, sales_order_lines, invoices)
}

# -- tables fed by webhook events (integration_assets.events) ---------------------------------------------
payments = _canonical(
    "payments",
    sa.Column("object_type", sa.String(32)),
    sa.Column("amount", sa.BigInteger),  # integer minor units, as Stripe sends them
    sa.Column("amount_refunded", sa.BigInteger),
    sa.Column("currency", sa.String(3)),
    sa.Column("status", sa.String(32)),
    sa.Column("customer_id", sa.String(64)),
    sa.Column("payment_intent_id", sa.String(64)),
    sa.Column("charge_id", sa.String(64)),
    sa.Column("order_id", sa.String(64)),
    sa.Column("invoice_id", sa.String(64)),
    sa.Column("refund_reason", sa.String(64)),
    sa.Column("livemode", sa.Boolean),
    sa.Column("created_at", TS),
    sa.Column("event_id", sa.String(255)),
    sa.Column("event_type", sa.String(128)),
    sa.Index("ix_payments_order_id", "order_id"),
    sa.Index("ix_payments_payment_intent_id", "payment_intent_id"),
)

shipment_events = _canonical(
    "shipment_events",
    sa.Column("tracking_code", sa.String(64)),
    sa.Column("carrier", sa.String(64)),
    sa.Column("status", sa.String(32)),
    sa.Column("status_detail", sa.String(64)),
    sa.Column("previous_status", sa.String(32)),
    sa.Column("est_delivery_date", TS),
    sa.Column("shipment_id", sa.String(64)),
    sa.Column("mode", sa.String(16)),
    sa.Column("created_at", TS),
    sa.Column("event_id", sa.String(255)),
    sa.Column("event_type", sa.String(128)),
    sa.Index("ix_shipment_events_tracking_code", "tracking_code"),
)

CANONICAL_TABLES.update({t.name: t for t in (payments, shipment_events)})
