"""api budget: one request budget per external API and account, shared by every run and process

Revision ID: 0011_api_budget
Revises: 0010_outbound
Create Date: 2026-12-03 17:40:00

The key type is copied (as ``0001_foundation.py`` does) instead of imported from ``warehouse/schema/``: a
migration must not change when the schema module does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_api_budget"
down_revision: str | Sequence[str] | None = "0010_outbound"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine:
    # As warehouse.schema.key_string: keys compare bytewise on Postgres.
    return sa.String(length=length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_budget",
        sa.Column("api", _key(32), nullable=False),
        sa.Column("account", _key(64), nullable=False),
        sa.Column("grants", sa.Text(), nullable=False, server_default=""),
        sa.Column("paused_until", sa.Double(), nullable=True),
        sa.Column("live_until", sa.Double(), nullable=True),
        sa.Column("day", sa.String(length=10), nullable=True),
        sa.Column("day_used", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("day_backfill", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("granted_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("waits_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("wait_seconds_total", sa.Double(), nullable=False, server_default="0"),
        sa.Column("throttled_total", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("api", "account", name=op.f("pk_api_budget")),
    )


def downgrade() -> None:
    op.drop_table("api_budget")
