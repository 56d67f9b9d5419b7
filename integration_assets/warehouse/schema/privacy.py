"""The GDPR erasure log, which is also the suppression list (migration 0008)."""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import TS, key_string, metadata

# -- GDPR erasures (integration_assets.privacy; migration 0008) -------------------------------------------
# One row per erasure run: which record, how it was asked for, and what was erased where (counts, files and
# their hashes), never a personal value. The (source_system, entity, source_id) of every row is also the
# suppression list: a later load or event never brings that record's personal fields back.
privacy_erasures = sa.Table(
    "privacy_erasures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),  # the canonical table, e.g. contacts
    sa.Column("source_id", key_string(64), nullable=False),
    sa.Column("requested_via", sa.String(16), nullable=False),  # webhook | cli
    sa.Column("request_ref", sa.String(255)),  # the event's queue message id, or who ran the command
    sa.Column("requested_at", TS, nullable=False),  # the event's occurredAt, or when the command ran
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("status", sa.String(16), nullable=False),  # running | warehouse_done | finishing (files) | done
    sa.Column("stores", sa.Text),  # JSON: store -> rows/files/lines erased
    sa.Column("files", sa.Text),  # JSON: rewritten files (path, sha256 before/after, records removed)
    sa.Column("error", sa.Text),  # what failed, ids and paths only
    sa.Index("ix_privacy_erasures_key", "source_system", "entity", "source_id"),
)
