"""load claims: who runs a load (host, pid, heartbeat) and one running load per content hash

Revision ID: 0009_load_claims
Revises: 0008_privacy_erasures
Create Date: 2026-12-03 09:30:00

A ``running`` ledger row is the claim on a file's content: the partial unique index lets one process at a time
load a given (source_system, entity, content_hash), on SQLite and on Postgres alike. The owner columns let the
next start tell a live load from a dead one (``abandoned``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_load_claims"
down_revision: str | Sequence[str] | None = "0008_privacy_erasures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'running' AND content_hash IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("loads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("owner_pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("owner_started", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    # Rows left at 'running' by a killed load of the same content would break the unique index: all but the
    # newest are marked abandoned (the newest gets the same treatment at the next start if its owner is gone).
    conn = op.get_bind()
    stuck = conn.execute(
        sa.text(
            "SELECT load_id, source_system, entity, content_hash FROM loads "
            "WHERE status = 'running' AND content_hash IS NOT NULL ORDER BY started_at DESC"
        )
    ).all()
    seen: set[tuple[str, str, str]] = set()
    for load_id, system, entity, sha in stuck:
        if (system, entity, sha) in seen:
            conn.execute(
                sa.text("UPDATE loads SET status = 'abandoned', error = :e WHERE load_id = :i"),
                {
                    "e": "abandoned: another running load of the same content (found by migration 0009)",
                    "i": load_id,
                },
            )
        seen.add((system, entity, sha))
    op.create_index(
        "uq_loads_running_content",
        "loads",
        ["source_system", "entity", "content_hash"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("uq_loads_running_content", table_name="loads")
    with op.batch_alter_table("loads", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("owner_started")
        batch_op.drop_column("owner_pid")
        batch_op.drop_column("owner_host")
