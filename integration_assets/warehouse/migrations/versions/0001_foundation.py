"""warehouse foundation: canonical tables, loads ledger, dead letters, drift

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-27 03:27:20.310763
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Natural-key columns compare bytewise on Postgres (faster sorts and lookups, locale-independent).
KEY32 = sa.String(length=32).with_variant(postgresql.VARCHAR(32, collation="C"), "postgresql")
KEY64 = sa.String(length=64).with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql")

revision: str = "0001_foundation"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "companies",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("industry", sa.String(length=128), nullable=True),
        sa.Column("country", sa.String(length=128), nullable=True),
        sa.Column("odoo_partner_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_companies")),
    )
    op.create_table(
        "contacts",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(length=255), nullable=True),
        sa.Column("last_name", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=64), nullable=True),
        sa.Column("lead_status", sa.String(length=64), nullable=True),
        sa.Column("company_id", sa.String(length=64), nullable=True),
        sa.Column("country", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_contacts")),
    )
    op.create_table(
        "customers",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("is_company", sa.Boolean(), nullable=True),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("street", sa.String(length=255), nullable=True),
        sa.Column("city", sa.String(length=128), nullable=True),
        sa.Column("zip", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=128), nullable=True),
        sa.Column("vat", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_customers")),
    )
    op.create_table(
        "dead_letter_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dead_letter_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("contract_version", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter_actions")),
    )
    with op.batch_alter_table("dead_letter_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letter_actions_dead_letter_id"), ["dead_letter_id"], unique=False
        )

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=255), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("check_name", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("column_name", sa.String(length=255), nullable=True),
        sa.Column("offending_value", sa.Text(), nullable=True),
        sa.Column("errors", sa.Text(), nullable=True),
        sa.Column("raw_record", sa.Text(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=True),
        sa.Column("contract_version", sa.String(length=128), nullable=True),
        sa.Column("file_name", sa.String(length=1024), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("load_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_dead_letters_fingerprint")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dead_letters_status_source", ["status", "source_system", "entity"], unique=False
        )

    op.create_table(
        "deals",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("pipeline", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("close_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("company_id", sa.String(length=64), nullable=True),
        sa.Column("is_closed_won", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_deals")),
    )
    op.create_table(
        "invoices",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("move_type", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("payment_state", sa.String(length=32), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("invoice_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("amount_untaxed", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_tax", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_total", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_residual", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("invoice_origin", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_invoices")),
    )
    op.create_table(
        "loads",
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("target_table", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), server_default="file", nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("file_bytes", sa.BigInteger(), nullable=True),
        sa.Column("contract", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("rows_read", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_inserted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_updated", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_unchanged", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_duplicate", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("drift", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("load_id", name=op.f("pk_loads")),
    )
    with op.batch_alter_table("loads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loads_content_hash"), ["content_hash"], unique=False)

    op.create_table(
        "products",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("default_code", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("barcode", sa.String(length=64), nullable=True),
        sa.Column("list_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("standard_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("product_type", sa.String(length=32), nullable=True),
        sa.Column("category", sa.String(length=255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_products")),
    )
    op.create_table(
        "sales_order_lines",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("qty_delivered", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("qty_invoiced", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("price_unit", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("discount", sa.Numeric(precision=9, scale=4), nullable=True),
        sa.Column("price_subtotal", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("price_total", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_sales_order_lines")),
    )
    op.create_table(
        "sales_orders",
        sa.Column("source_system", KEY32, nullable=False),
        sa.Column("source_id", KEY64, nullable=False),
        sa.Column("source_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("order_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("amount_untaxed", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_tax", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_total", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=True),
        sa.Column("invoice_status", sa.String(length=32), nullable=True),
        sa.Column("client_order_ref", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_sales_orders")),
    )
    op.create_table(
        "schema_drift",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("contract_version", sa.String(length=128), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("column_name", sa.String(length=255), nullable=True),
        sa.Column("rows_affected", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("sample", sa.Text(), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_drift")),
    )
    with op.batch_alter_table("schema_drift", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_schema_drift_load_id"), ["load_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("schema_drift", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_schema_drift_load_id"))

    op.drop_table("schema_drift")
    op.drop_table("sales_orders")
    op.drop_table("sales_order_lines")
    op.drop_table("products")
    with op.batch_alter_table("loads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loads_content_hash"))

    op.drop_table("loads")
    op.drop_table("invoices")
    op.drop_table("deals")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index("ix_dead_letters_status_source")

    op.drop_table("dead_letters")
    with op.batch_alter_table("dead_letter_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letter_actions_dead_letter_id"))

    op.drop_table("dead_letter_actions")
    op.drop_table("customers")
    op.drop_table("contacts")
    op.drop_table("companies")
