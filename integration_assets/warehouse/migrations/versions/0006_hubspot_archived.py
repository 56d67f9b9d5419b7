"""hubspot archived: archived_at on contacts, companies and deals (HubSpot deletions and restores)

Revision ID: 0006_hubspot_archived
Revises: 0005_events
Create Date: 2026-11-27 10:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_hubspot_archived"
down_revision: str | Sequence[str] | None = "0005_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("contacts", "companies", "deals")


def upgrade() -> None:
    for table in TABLES:  # nullable, no default: instant on Postgres whatever the table's size
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("archived_at")
