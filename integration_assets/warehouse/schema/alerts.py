"""Alert incident state and the delivery log, on the shared warehouse metadata (migration 0003_alerts).

An incident is one row per alert key; it cycles open -> resolved -> open (a new *episode*) and is never
deleted, so the status screen and the Dagster sensors can ask "what is firing now, since when, how often".
Every attempt to tell a channel about an incident is one ``alert_deliveries`` row (sent or failed), which is
what makes a failed Slack post visible and lets the notifier catch that channel up on the next tick.
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import TS, metadata

IncidentStatus = Literal["open", "resolved"]
DeliveryKind = Literal["fire", "resolve"]
DeliveryStatus = Literal["sent", "failed"]

KEY_LENGTH = 255

alert_incidents = sa.Table(
    "alert_incidents",
    metadata,
    sa.Column("key", sa.String(KEY_LENGTH), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("source_system", sa.String(32)),
    sa.Column("entity", sa.String(64)),
    sa.Column("check_name", sa.String(128)),
    sa.Column("runbook", sa.Text),
    sa.Column("details", sa.Text),  # JSON, already redacted: what the last fire said
    sa.Column("last_summary", sa.Text),  # redacted, from the last fire or the resolve
    # Episodes: 1 for the first opening, +1 each time a resolved incident fires again.
    sa.Column("episode", sa.Integer, nullable=False, server_default="1"),
    sa.Column("fire_count", sa.Integer, nullable=False, server_default="1"),  # fires in this episode
    sa.Column("first_fired_at", TS, nullable=False),  # first fire ever
    sa.Column("opened_at", TS, nullable=False),  # start of the current episode
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Column("last_notified_at", TS, nullable=False),  # drives re-notify and catch-up
    sa.Column("resolved_at", TS),
    sa.CheckConstraint("status IN ('open', 'resolved')", name="ck_alert_incidents_status"),
    sa.CheckConstraint("severity IN ('warning', 'error', 'critical')", name="ck_alert_incidents_severity"),
    sa.Index("ix_alert_incidents_status", "status"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "incident_key",
        sa.String(KEY_LENGTH),
        sa.ForeignKey("alert_incidents.key", name="fk_alert_deliveries_incident_key", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("episode", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("notification_id", sa.String(64), nullable=False),  # same id on every retry of one notice
    sa.Column("error", sa.Text),  # redacted
    sa.Column("at", TS, nullable=False),
    sa.CheckConstraint("kind IN ('fire', 'resolve')", name="ck_alert_deliveries_kind"),
    sa.CheckConstraint("status IN ('sent', 'failed')", name="ck_alert_deliveries_status"),
    sa.Index("ix_alert_deliveries_incident", "incident_key", "episode", "kind"),
)
