"""Tables of the quality layer, on the shared warehouse metadata (migration 0004_quality).

``reconciliation_mismatches``: the keys a reconciliation check could not match, one row per key and side,
replaced on every evaluation of that check (so it always says what is unmatched *now*). Queryable by
analysts and referenced from the alerts' runbook lines.

``connector_http_stats``: responses of connector HTTP calls counted per source system, minute and status
class; the sustained-429/5xx alert sensor reads it (``quality.connector_health``).
"""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import TS, metadata

reconciliation_mismatches = sa.Table(
    "reconciliation_mismatches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("check_name", sa.String(128), nullable=False),
    # The unmatched key: a deal id, an order id, a partner id, or "<day>/<currency>" for payments.
    sa.Column("key", sa.String(255), nullable=False),
    # Which side has it without a counterpart: hubspot | odoo | stripe | both (present on both, values differ).
    sa.Column("side", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text),  # JSON: ids, states, amounts; never names, e-mails or other PII
    sa.Column("detected_at", TS, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Index("ix_reconciliation_mismatches_check", "check_name", "side"),
)

connector_http_stats = sa.Table(
    "connector_http_stats",
    metadata,
    sa.Column("source_system", sa.String(32), nullable=False),
    sa.Column("minute", TS, nullable=False),  # start of the UTC minute
    # 2xx | 3xx | 4xx | 429 | 5xx | transport (timeout, refused, reset)
    sa.Column("status_class", sa.String(16), nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("source_system", "minute", "status_class"),
)
