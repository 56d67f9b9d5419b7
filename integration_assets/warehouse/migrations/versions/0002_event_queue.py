"""event queue: the embedded (SQL) queue table for webhook events

Revision ID: 0002_event_queue
Revises: 0001_foundation
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_event_queue"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_queue",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("queue_name", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("event_type", sa.String(length=128), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("enqueued_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("visible_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_queue")),
        sa.UniqueConstraint("queue_name", "message_id", name=op.f("uq_event_queue_queue_name_message_id")),
    )
    with op.batch_alter_table("event_queue", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_queue_queue_name_visible_at_ms", ["queue_name", "visible_at_ms", "id"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        # A queue table churns (insert, update, delete per event): vacuum it after 1% dead rows rather than
        # the default 20%, so claims keep scanning a small index.
        op.execute(
            "ALTER TABLE event_queue SET (autovacuum_vacuum_scale_factor = 0.01, "
            "autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02)"
        )


def downgrade() -> None:
    with op.batch_alter_table("event_queue", schema=None) as batch_op:
        batch_op.drop_index("ix_event_queue_queue_name_visible_at_ms")
    op.drop_table("event_queue")
