"""privacy erasures: contacts.erased_at and the privacy_erasures audit table (GDPR erasure, suppression list)

Revision ID: 0008_privacy_erasures
Revises: 0007_event_content_hash
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_privacy_erasures"
down_revision: str | Sequence[str] | None = "0007_event_content_hash"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Nullable, no default: instant on Postgres whatever the table's size.
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_at", TS, nullable=True))
    op.create_table(
        "privacy_erasures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        # As warehouse.schema.key_string: keys compare bytewise on Postgres.
        sa.Column(
            "source_id",
            sa.String(length=64).with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("requested_via", sa.String(length=16), nullable=False),
        sa.Column("request_ref", sa.String(length=255), nullable=True),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stores", sa.Text(), nullable=True),
        sa.Column("files", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_erasures")),
    )
    with op.batch_alter_table("privacy_erasures", schema=None) as batch_op:
        batch_op.create_index(
            "ix_privacy_erasures_key", ["source_system", "entity", "source_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("privacy_erasures", schema=None) as batch_op:
        batch_op.drop_index("ix_privacy_erasures_key")
    op.drop_table("privacy_erasures")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
