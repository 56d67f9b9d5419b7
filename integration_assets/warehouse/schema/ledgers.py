"""The ``loads`` ledger (one row per load attempt) and the drift findings of each load."""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import TS, metadata

# One row per load attempt of one file (or one replay): the ledger that makes loads idempotent and auditable.
loads = sa.Table(
    "loads",
    metadata,
    sa.Column("load_id", sa.String(64), primary_key=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("target_table", sa.String(64)),
    sa.Column("kind", sa.String(16), nullable=False, server_default="file"),  # file | replay | event
    sa.Column("file_name", sa.String(1024)),
    sa.Column("content_hash", sa.String(64), index=True),
    sa.Column("file_bytes", sa.BigInteger),
    sa.Column("contract", sa.String(128)),
    # running|succeeded|rejected|failed|duplicate_file|abandoned|already_loading
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("rows_read", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_inserted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_unchanged", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_duplicate", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_quarantined", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("drift", sa.Text),  # JSON summary of drift findings
    sa.Column("error", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("duration_ms", sa.BigInteger),
    # Who runs the load: a 'running' row whose process is gone (same host) or whose heartbeat stopped (another
    # host) is marked abandoned at the next start. owner_started tells a reused pid from the original process.
    sa.Column("owner_host", sa.String(255)),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("owner_started", sa.BigInteger),
    sa.Column("heartbeat_at", TS),
    # The daily partition (YYYY-MM-DD) of a partitioned API pull this load belongs to; null otherwise (0012).
    sa.Column("partition_key", sa.String(32)),
    sa.Index("ix_loads_partition", "source_system", "entity", "partition_key"),
    # The claim: one running load per content (migration 0009).
    sa.Index(
        "uq_loads_running_content",
        "source_system",
        "entity",
        "content_hash",
        unique=True,
        sqlite_where=sa.text("status = 'running' AND content_hash IS NOT NULL"),
        postgresql_where=sa.text("status = 'running' AND content_hash IS NOT NULL"),
    ),
)

# Drift findings per file against the contract that was applied.
schema_drift = sa.Table(
    "schema_drift",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("load_id", sa.String(64), nullable=False, index=True),
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("contract_version", sa.String(128)),
    sa.Column("kind", sa.String(32), nullable=False),  # new_column|missing_column|format_change|unknown_value
    sa.Column("column_name", sa.String(255)),
    sa.Column("rows_affected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("sample", sa.Text),  # JSON list of up to 5 distinct offending values (never PII columns)
    sa.Column("detected_at", TS, nullable=False),
)
