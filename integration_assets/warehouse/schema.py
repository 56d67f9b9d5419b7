"""Warehouse tables (SQLAlchemy Core). Alembic migrations create them; this module is what code queries.

Canonical tables mirror the pandera models in ``integration_assets.contracts.models`` column for column
(a test keeps them in sync). Every canonical row carries the lineage columns below and is keyed by
(source_system, source_id).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)

# Written by the engine and the writer, not by a contract; outside the row hash.
LINEAGE_COLUMNS = frozenset({"source_system", "mapping_version", "load_id", "row_hash"})
# Nullable columns added after rows and contracts existed: a contract may leave them out (null), and they stay
# outside the row hash (they change only with a newer source_updated_at), so existing rows keep their hash.
LATE_COLUMNS = frozenset({"archived_at", "erased_at"})


def key_string(length: int) -> sa.types.TypeEngine:
    """Key columns compare bytewise on Postgres (COLLATE "C"): sorting and index lookups are several times
    faster than with a linguistic collation, and key equality does not depend on the server's locale."""
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


MONEY = sa.Numeric(18, 4)


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

# One row per load attempt of one file (or one replay): the ledger that makes loads idempotent and auditable.
loads = sa.Table(
    "loads",
    metadata,
    sa.Column("load_id", sa.String(64), primary_key=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("target_table", sa.String(64)),
    sa.Column("kind", sa.String(16), nullable=False, server_default="file"),  # file | replay | event
    sa.Column("file_name", sa.String(1024)),
    sa.Column("content_hash", sa.String(64), index=True),
    sa.Column("file_bytes", sa.BigInteger),
    sa.Column("contract", sa.String(128)),
    # running|succeeded|rejected|failed|duplicate_file|abandoned|already_loading
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_inserted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_unchanged", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_duplicate", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_quarantined", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("drift", sa.Text),  # JSON summary of drift findings
    sa.Column("error", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("duration_ms", sa.BigInteger),
    # Who runs the load: a 'running' row whose process is gone (same host) or whose heartbeat stopped (another
    # host) is marked abandoned at the next start. owner_started tells a reused pid from the original process.
    sa.Column("owner_host", sa.String(255)),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("owner_started", sa.BigInteger),
    sa.Column("heartbeat_at", TS),
    # The claim: one running load per content (migration 0009).
    sa.Index(
        "uq_loads_running_content",
        "source_system",
        "entity",
        "content_hash",
        unique=True,
        sqlite_where=sa.text("status = 'running' AND content_hash IS NOT NULL"),
        postgresql_where=sa.text("status = 'running' AND content_hash IS NOT NULL"),
    ),
)

# The quarantine: one row per bad record (or whole file / event), a small state machine
# pending -> replayed | discarded, keyed by a fingerprint so that seeing the same bad record again bumps
# attempts/last_seen instead of adding a copy.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("natural_key", sa.String(255)),
    sa.Column("stage", sa.String(16), nullable=False),  # file | parse | map | validate | load | event
    sa.Column("check_name", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("column_name", sa.String(255)),
    sa.Column("offending_value", sa.Text),
    sa.Column("errors", sa.Text),  # JSON list of every finding for the record
    sa.Column("raw_record", sa.Text),  # JSON of the record as read (never jsonb: it must hold \u0000)
    sa.Column("headers", sa.Text),  # JSON, events only
    sa.Column("contract_version", sa.String(128)),
    sa.Column("file_name", sa.String(1024)),
    sa.Column(
        "position", sa.BigInteger
    ),  # 1-based record number in the file (line for CSV, excluding header)
    sa.Column("load_id", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("first_seen", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
    sa.Column("resolved_at", TS),
    sa.Column("resolution_note", sa.Text),
    sa.Index("ix_dead_letters_status_source", "status", "source_system", "entity"),
)

# Audit trail of every action on a dead letter (replay attempt, discard), who/when/which contract/outcome.
dead_letter_actions = sa.Table(
    "dead_letter_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dead_letter_id", sa.Integer, nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),  # replay | dry_run | discard
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("contract_version", sa.String(128)),
    sa.Column("outcome", sa.String(16), nullable=False),  # replayed | still_failing | discarded | would_load
    sa.Column("detail", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("at", TS, nullable=False),
)

# Drift findings per file against the contract that was applied.
schema_drift = sa.Table(
    "schema_drift",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("load_id", sa.String(64), nullable=False, index=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("contract_version", sa.String(128)),
    sa.Column("kind", sa.String(32), nullable=False),  # new_column|missing_column|format_change|unknown_value
    sa.Column("column_name", sa.String(255)),
    sa.Column("rows_affected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("sample", sa.Text),  # JSON list of up to 5 distinct offending values (never PII columns)
    sa.Column("detected_at", TS, nullable=False),
)

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

# -- GDPR erasures (integration_assets.privacy; migration 0008) -------------------------------------------
# One row per erasure run: which record, how it was asked for, and what was erased where (counts, files and
# their hashes), never a personal value. The (source_system, entity, source_id) of every row is also the
# suppression list: a later load or event never brings that record's personal fields back.
privacy_erasures = sa.Table(
    "privacy_erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),  # the canonical table, e.g. contacts
    sa.Column("source_id", key_string(64), nullable=False),
    sa.Column("requested_via", sa.String(16), nullable=False),  # webhook | cli
    sa.Column("request_ref", sa.String(255)),  # the event's queue message id, or who ran the command
    sa.Column("requested_at", TS, nullable=False),  # the event's occurredAt, or when the command ran
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("status", sa.String(16), nullable=False),  # running | warehouse_done | finishing (files) | done
    sa.Column("stores", sa.Text),  # JSON: store -> rows/files/lines erased
    sa.Column("files", sa.Text),  # JSON: rewritten files (path, sha256 before/after, records removed)
    sa.Column("error", sa.Text),  # what failed, ids and paths only
    sa.Index("ix_privacy_erasures_key", "source_system", "entity", "source_id"),
)
