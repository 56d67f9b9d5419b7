"""The embedded queue's table, declared on the warehouse's shared metadata (migration 0002_event_queue).

Times are epoch milliseconds (BIGINT): comparisons and arithmetic stay portable between SQLite and
Postgres, and on Postgres the clock used is the database's (``now()``), not each consumer's.
"""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import metadata

event_queue = sa.Table(
    "event_queue",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    # Several logical queues may share the table (and tests isolate themselves by name).
    sa.Column("queue_name", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(255), nullable=False),  # idempotency key, e.g. stripe:evt_…
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # the verified payload, byte for byte
    sa.Column("headers", sa.Text, nullable=False),  # JSON object of non-secret request headers
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("enqueued_at_ms", sa.BigInteger, nullable=False),
    # A row is visible (claimable) when visible_at_ms <= now: set to the future by a claim (visibility
    # timeout) or by a retry (backoff).
    sa.Column("visible_at_ms", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),  # claims so far
    sa.Column("claim_token", sa.String(32)),  # set by a claim; settles only with the same token
    sa.Column("last_error", sa.Text),
    # Identical re-deliveries of a message that is still pending collapse into one row.
    sa.UniqueConstraint("queue_name", "message_id"),
    sa.Index("ix_event_queue_queue_name_visible_at_ms", "queue_name", "visible_at_ms", "id"),
)
