"""The shared API request budget (migration 0011_api_budget), written by ``warehouse/api_budget.py`` only.

One row per external API and account: the grant times of the current rolling window (so every process and
run sees the same window), a pause set by a 429 / ``Retry-After`` / a provider header at 0 remaining, the
UTC day's counts for a daily limit, and running totals for ``/metrics``.
"""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import key_string, metadata

api_budget = sa.Table(
    "api_budget",
    metadata,
    sa.Column("api", key_string(32), nullable=False),  # hubspot | odoo | stripe | easypost
    sa.Column("account", key_string(64), nullable=False),  # a portal / database / account id, or "default"
    # The rolling window: one entry per token granted, oldest first, "<epoch ms>" (live, outbound),
    # "<epoch ms>b" (backfill) or "<epoch ms>p" (used by someone else, as the provider's headers said).
    sa.Column("grants", sa.Text, nullable=False, server_default=""),
    sa.Column("paused_until", sa.Double, nullable=True),  # epoch s: nothing is granted before it
    sa.Column(
        "live_until", sa.Double, nullable=True
    ),  # epoch s: live demand seen; backfill held to its share
    sa.Column("day", sa.String(10), nullable=True),  # the UTC day the day_* counts are for (YYYY-MM-DD)
    sa.Column("day_used", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("day_backfill", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("granted_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("waits_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("wait_seconds_total", sa.Double, nullable=False, server_default="0"),
    sa.Column("throttled_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("api", "account"),
)
