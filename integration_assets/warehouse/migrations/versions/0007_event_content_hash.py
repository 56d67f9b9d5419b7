"""event content hash: processed_events.content_hash, so a key seen again with other content is a collision

Revision ID: 0007_event_content_hash
Revises: 0006_hubspot_archived
Create Date: 2026-12-03 09:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_event_content_hash"
down_revision: str | Sequence[str] | None = "0006_hubspot_archived"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: instant on Postgres whatever the ledger's size; rows written before it have none.
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_events", schema=None) as batch_op:
        batch_op.drop_column("content_hash")
