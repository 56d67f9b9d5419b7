"""outbound: the transactional outbox, the outbound ledger and the chains (deal won -> order -> label)

Revision ID: 0010_outbound
Revises: 0009_load_claims
Create Date: 2026-12-03 17:00:00

The key types are copied (as ``0001_foundation.py`` does) instead of imported from ``warehouse/schema/``: a
migration must not change when the schema module does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_outbound"
down_revision: str | Sequence[str] | None = "0009_load_claims"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
MONEY = sa.Numeric(precision=18, scale=4)


def _key(length: int) -> sa.types.TypeEngine:
    # As warehouse.schema.key_string: keys compare bytewise on Postgres.
    return sa.String(length=length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("key", _key(255), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("chain_id", _key(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_key")),
    )
    op.create_index("ix_outbox_sent_at_id", "outbox", ["sent_at", "id"], unique=False)
    op.create_table(
        "outbound_ledger",
        sa.Column("key", _key(255), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("chain_id", _key(64), nullable=False),
        sa.Column("target_system", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.String(length=128), nullable=True),
        sa.Column("target_ref", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("contract_version", sa.String(length=128), nullable=True),
        sa.Column("first_attempt_at", TS, nullable=True),
        sa.Column("last_attempt_at", TS, nullable=True),
        sa.Column("done_at", TS, nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("outcome_detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_outbound_ledger")),
    )
    op.create_index("ix_outbound_ledger_chain_id", "outbound_ledger", ["chain_id"], unique=False)
    op.create_index("ix_outbound_ledger_step_status", "outbound_ledger", ["step", "status"], unique=False)
    op.create_table(
        "outbound_chains",
        sa.Column("chain_id", _key(64), nullable=False),
        sa.Column("generation", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deal_id", sa.String(length=64), nullable=False),
        sa.Column("won_at", TS, nullable=True),
        sa.Column("amount_at_order", MONEY, nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("partner_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("order_name", sa.String(length=64), nullable=True),
        sa.Column("picking_ids", sa.Text(), nullable=True),
        sa.Column("shipment_id", sa.String(length=64), nullable=True),
        sa.Column("tracking_code", sa.String(length=64), nullable=True),
        sa.Column("label_url", sa.String(length=1024), nullable=True),
        sa.Column("shipment_status", sa.String(length=32), nullable=True),
        sa.Column("shipment_status_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_outbound_chains")),
    )
    op.create_index("ix_outbound_chains_order_id", "outbound_chains", ["order_id"], unique=False)
    op.create_index("ix_outbound_chains_tracking_code", "outbound_chains", ["tracking_code"], unique=False)
    op.create_index("ix_outbound_chains_status", "outbound_chains", ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("outbound_chains")
    op.drop_table("outbound_ledger")
    op.drop_table("outbox")
