"""The event-id ledger, declared on the warehouse's shared metadata (migration 0005_events).

One row per provider event whose effect was committed: written in the same transaction as the effect, so
an event id found here has been applied (or found stale) exactly once, and a redelivery changes nothing.
Dead-lettered events are not recorded: a replay after a contract fix must be able to apply them.
"""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import TS, metadata

OUTCOMES = (
    "applied",
    "stale",
    "ignored",
)  # ignored: also an event type ignored by policies.yaml (events.ignore)

processed_events = sa.Table(
    "processed_events",
    metadata,
    sa.Column("source", sa.String(32), nullable=False),  # stripe | hubspot | easypost
    # The queue message id (queue.keys): stripe:evt_…, easypost:evt_…, hubspot:<eventId>:<digest of the change>.
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("event_type", sa.String(128), nullable=False),
    sa.Column("received_at", TS, nullable=False),  # accepted by the webhook receiver
    sa.Column("applied_at", TS, nullable=False),  # the processing transaction
    # applied: the event's state is now in the warehouse; stale: newer state was there already (or arrived in
    # the same batch); ignored: a change the contract deliberately does not map (e.g. a HubSpot property).
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),  # = load_id of the canonical rows this batch wrote
    sa.Column("target_table", sa.String(64)),
    sa.Column("object_id", sa.String(64)),  # source_id of the canonical row the event is about
    # SHA-256 of the event's content (queue.keys): the same key seen again with another hash is a key
    # collision (dead-lettered), with the same hash a duplicate. Null on rows written before 0007.
    sa.Column("content_hash", sa.String(64)),
    sa.PrimaryKeyConstraint("source", "event_id"),
    # What a batch did (its load_id is on the canonical rows it wrote). No index on the times: every batch
    # inserts thousands of rows, and pruning by age is a rare sequential scan.
    sa.Index("ix_processed_events_batch_id", "batch_id"),
)
