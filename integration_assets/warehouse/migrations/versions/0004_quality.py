"""quality: reconciliation mismatches and connector HTTP response counts

Revision ID: 0004_quality
Revises: 0001_foundation
Create Date: 2026-11-27 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_quality"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_mismatches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("check_name", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_mismatches")),
    )
    with op.batch_alter_table("reconciliation_mismatches", schema=None) as batch_op:
        batch_op.create_index("ix_reconciliation_mismatches_check", ["check_name", "side"], unique=False)

    op.create_table(
        "connector_http_stats",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_class", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint(
            "source_system", "minute", "status_class", name=op.f("pk_connector_http_stats")
        ),
    )


def downgrade() -> None:
    op.drop_table("connector_http_stats")
    with op.batch_alter_table("reconciliation_mismatches", schema=None) as batch_op:
        batch_op.drop_index("ix_reconciliation_mismatches_check")
    op.drop_table("reconciliation_mismatches")
