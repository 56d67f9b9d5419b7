"""partition loads: the loads ledger names the daily partition a pulled file belongs to

Revision ID: 0012_partition_loads
Revises: 0011_api_budget
Create Date: 2026-12-03 17:55:00

A load of a partitioned API pull (``assets/pull.py``) records its partition key (``YYYY-MM-DD``), so "rows
written per partition" is one query on the ledger (a backfill of one week leaves the other weeks at 0). Null
for exports, events and replays. Indexed with the source and entity: the per-partition queries filter on all
three.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_partition_loads"
down_revision: str | Sequence[str] | None = "0011_api_budget"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("loads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("partition_key", sa.String(length=32), nullable=True))
    op.create_index("ix_loads_partition", "loads", ["source_system", "entity", "partition_key"])


def downgrade() -> None:
    op.drop_index("ix_loads_partition", table_name="loads")
    with op.batch_alter_table("loads", schema=None) as batch_op:
        batch_op.drop_column("partition_key")
