"""The quarantine tables: ``dead_letters`` and the audit trail of every action on them."""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import TS, metadata

# The quarantine: one row per bad record (or whole file / event), a small state machine
# pending -> replayed | discarded, keyed by a fingerprint so that seeing the same bad record again bumps
# attempts/last_seen instead of adding a copy.
dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("natural_key", sa.String(255)),
    sa.Column(
        "stage", sa.String(16), nullable=False
    ),  # file | parse | map | validate | load | event | outbound
    sa.Column("check_name", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("column_name", sa.String(255)),
    sa.Column("offending_value", sa.Text),
    sa.Column("errors", sa.Text),  # JSON list of every finding for the record
    sa.Column("raw_record", sa.Text),  # JSON of the record as read (never jsonb: it must hold \u0000)
    sa.Column("headers", sa.Text),  # JSON, events only
    sa.Column("contract_version", sa.String(128)),
    sa.Column("file_name", sa.String(1024)),
    sa.Column(
        "position", sa.BigInteger
    ),  # 1-based record number in the file (line for CSV, excluding header)
    sa.Column("load_id", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("first_seen", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
    sa.Column("resolved_at", TS),
    sa.Column("resolution_note", sa.Text),
    sa.Index("ix_dead_letters_status_source", "status", "source_system", "entity"),
)

# Audit trail of every action on a dead letter (replay attempt, discard), who/when/which contract/outcome.
dead_letter_actions = sa.Table(
    "dead_letter_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dead_letter_id", sa.Integer, nullable=False, index=True),
    sa.Column("action", sa.String(16), nullable=False),  # replay | dry_run | discard
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("contract_version", sa.String(128)),
    sa.Column("outcome", sa.String(16), nullable=False),  # replayed | still_failing | discarded | would_load
    sa.Column("detail", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("at", TS, nullable=False),
)
