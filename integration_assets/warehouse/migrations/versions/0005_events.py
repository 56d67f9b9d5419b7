"""events: payments and shipment_events (canonical tables fed by webhooks) and the processed_events ledger

Merges the heads 0002_event_queue, 0003_alerts and 0004_quality, so the chain has one head again.

Revision ID: 0005_events
Revises: 0002_event_queue, 0003_alerts, 0004_quality
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_events"
down_revision: str | Sequence[str] | None = ("0002_event_queue", "0003_alerts", "0004_quality")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _key(length: int) -> sa.types.TypeEngine:
    # As warehouse.schema.key_string: keys compare bytewise on Postgres.
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _lineage() -> list[sa.Column]:
    return [
        sa.Column("source_system", _key(32), nullable=False),
        sa.Column("source_id", _key(64), nullable=False),
        sa.Column("source_updated_at", TS, nullable=False),
        sa.Column("mapping_version", sa.String(length=64), nullable=False),
        sa.Column("load_id", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "payments",
        *_lineage(),
        sa.Column("object_type", sa.String(length=32), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=True),
        sa.Column("charge_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("refund_reason", sa.String(length=64), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=True),
        sa.Column("created_at", TS, nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_payments")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_order_id", ["order_id"], unique=False)
        batch_op.create_index("ix_payments_payment_intent_id", ["payment_intent_id"], unique=False)

    op.create_table(
        "shipment_events",
        *_lineage(),
        sa.Column("tracking_code", sa.String(length=64), nullable=True),
        sa.Column("carrier", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("status_detail", sa.String(length=64), nullable=True),
        sa.Column("previous_status", sa.String(length=32), nullable=True),
        sa.Column("est_delivery_date", TS, nullable=True),
        sa.Column("shipment_id", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("created_at", TS, nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_shipment_events")),
    )
    with op.batch_alter_table("shipment_events", schema=None) as batch_op:
        batch_op.create_index("ix_shipment_events_tracking_code", ["tracking_code"], unique=False)

    op.create_table(
        "processed_events",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("applied_at", TS, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("target_table", sa.String(length=64), nullable=True),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("source", "event_id", name=op.f("pk_processed_events")),
    )
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.create_index("ix_processed_events_batch_id", ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_index("ix_processed_events_batch_id")
    op.drop_table("processed_events")
    with op.batch_alter_table("shipment_events", schema=None) as batch_op:
        batch_op.drop_index("ix_shipment_events_tracking_code")
    op.drop_table("shipment_events")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_payment_intent_id")
        batch_op.drop_index("ix_payments_order_id")
    op.drop_table("payments")
