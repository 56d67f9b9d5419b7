"""Alert incidents in the warehouse: what an :class:`Alert` is, and the ``alert_incidents`` /
``alert_deliveries`` bookkeeping the notifier keeps (one incident row per key, one delivery row per notice
and channel).

Every transition is one atomic conditional statement (INSERT ... ON CONFLICT DO NOTHING, UPDATE ... WHERE
status = ...), so two sensors evaluating the same check at once change the row once, not twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from integration_assets.alerts.delivery import DeliveryResult
from integration_assets.alerts.notification import Notification, NotificationKind
from integration_assets.observability.redact import redact, redact_text
from integration_assets.warehouse.db import get_engine, is_postgres
from integration_assets.warehouse.schema import KEY_LENGTH, alert_deliveries, alert_incidents

Severity = Literal["warning", "error", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
Action = Literal["opened", "reopened", "renotified", "deduplicated", "resolved", "not_open"]

# Details are for a human reading an alert, not a data dump: beyond this they are replaced by a summary
# (keeps Slack/e-mail readable and the incidents table small).
MAX_DETAILS_CHARS = 16_000


@dataclass(frozen=True)
class Alert:
    """Something is wrong, identified by ``key`` (e.g. ``check:warehouse/contacts:freshness``).

    The key identifies the incident: the same key firing again is the same incident. ``details`` must be
    JSON-like; it is redacted anyway, but keep raw payload values out of it.
    """

    key: str
    severity: Severity
    title: str
    summary: str
    source_system: str | None = None
    entity: str | None = None
    check_name: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    runbook: str = ""

    def __post_init__(self) -> None:
        if not self.key or len(self.key) > KEY_LENGTH:
            raise ValueError(f"alert key must be 1..{KEY_LENGTH} characters: {self.key[:40]!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.severity=} is not one of {SEVERITIES}")
        if not self.title:
            raise ValueError(f"alert {self.key!r} needs a title")
        if not isinstance(self.details, Mapping):
            raise TypeError(f"alert {self.key!r}: details must be a mapping")


@dataclass(frozen=True)
class Incident:
    """One row of ``alert_incidents`` (timestamps are timezone-aware UTC)."""

    key: str
    status: Literal["open", "resolved"]
    severity: str
    title: str
    source_system: str | None
    entity: str | None
    check_name: str | None
    runbook: str
    details: Mapping[str, Any]
    last_summary: str
    episode: int
    fire_count: int
    first_fired_at: datetime
    opened_at: datetime
    last_seen_at: datetime
    last_notified_at: datetime
    resolved_at: datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Incident:
        m = row._mapping
        return cls(
            key=m["key"],
            status=m["status"],
            severity=m["severity"],
            title=m["title"],
            source_system=m["source_system"],
            entity=m["entity"],
            check_name=m["check_name"],
            runbook=m["runbook"] or "",
            details=json.loads(m["details"]) if m["details"] else {},
            last_summary=m["last_summary"] or "",
            episode=m["episode"],
            fire_count=m["fire_count"],
            first_fired_at=aware(m["first_fired_at"]),
            opened_at=aware(m["opened_at"]),
            last_seen_at=aware(m["last_seen_at"]),
            last_notified_at=aware(m["last_notified_at"]),
            resolved_at=aware(m["resolved_at"]) if m["resolved_at"] else None,
        )


def aware(value: datetime) -> datetime:
    # SQLite hands timestamps back naive (everything we write is UTC); Postgres in the session's time zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _clip(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


def stored_key(key: str) -> str:
    """An incident key as it is stored: redacted and cut to the column's length."""
    return _clip(redact_text(key), KEY_LENGTH) or "-"


def _details_json(details: Mapping[str, Any]) -> str:
    text = json.dumps(details, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= MAX_DETAILS_CHARS:
        return text
    return json.dumps(
        {"_truncated": True, "_size_chars": len(text), "keys": sorted(str(k) for k in details)[:50]},
        sort_keys=True,
    )


def redacted(alert: Alert) -> Alert:
    """The alert as it may be stored and sent: every text and the details scrubbed."""
    return Alert(
        key=stored_key(alert.key),
        severity=alert.severity,
        title=redact_text(alert.title),
        summary=redact_text(alert.summary),
        source_system=redact_text(alert.source_system) if alert.source_system else None,
        entity=redact_text(alert.entity) if alert.entity else None,
        check_name=redact_text(alert.check_name) if alert.check_name else None,
        details=redact(dict(alert.details)),
        runbook=redact_text(alert.runbook),
    )


def _insert_ignore(engine: sa.Engine, table: sa.Table) -> Any:
    if is_postgres(engine):
        return pg_insert(table).on_conflict_do_nothing(index_elements=["key"])
    if engine.dialect.name == "sqlite":
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["key"])
    raise NotImplementedError(f"alerts support SQLite and PostgreSQL, not {engine.dialect.name}")


def record_firing(
    engine: sa.Engine, a: Alert, now: datetime, renotify_after: timedelta | None
) -> tuple[Action, Incident]:
    """Open, re-open or bump the incident of the (already redacted) alert ``a``; what happened and the row."""
    t = alert_incidents
    latest = {
        "severity": a.severity,
        "title": _clip(a.title, 255) or "-",
        "source_system": _clip(a.source_system, 32),
        "entity": _clip(a.entity, 64),
        "check_name": _clip(a.check_name, 128),
        "runbook": a.runbook,
        "details": _details_json(a.details),
        "last_summary": a.summary,
        "last_seen_at": now,
    }
    with engine.begin() as conn:
        new = {"key": a.key, "status": "open", "episode": 1, "fire_count": 1, "first_fired_at": now}
        new |= {"opened_at": now, "last_notified_at": now, **latest}
        # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
        if conn.execute(_insert_ignore(engine, t).values(**new).returning(t.c.key)).first() is not None:
            action: Action = "opened"
        elif conn.execute(
            sa.update(t)
            .where(t.c.key == a.key, t.c.status == "resolved")
            .values(
                status="open",
                episode=t.c.episode + 1,
                fire_count=1,
                opened_at=now,
                last_notified_at=now,
                resolved_at=None,
                **latest,
            )
        ).rowcount:
            action = "reopened"
        else:
            conn.execute(
                sa.update(t)
                .where(t.c.key == a.key, t.c.status == "open")
                .values(fire_count=t.c.fire_count + 1, **latest)
            )
            action = "deduplicated"
            if (
                renotify_after is not None
                and conn.execute(
                    sa.update(t)
                    .where(
                        t.c.key == a.key,
                        t.c.status == "open",
                        t.c.last_notified_at <= now - renotify_after,
                    )
                    .values(last_notified_at=now)
                ).rowcount
            ):
                action = "renotified"
        incident = Incident.from_row(conn.execute(sa.select(t).where(t.c.key == a.key)).one())
    return action, incident


def record_resolved(engine: sa.Engine, key: str, summary: str, now: datetime) -> tuple[bool, Incident | None]:
    """Resolve ``key``'s incident if it is open; whether it changed, and the row (None: it never fired)."""
    t = alert_incidents
    with engine.begin() as conn:
        changed = conn.execute(
            sa.update(t)
            .where(t.c.key == key, t.c.status == "open")
            .values(status="resolved", resolved_at=now, last_notified_at=now, last_summary=summary)
        ).rowcount
        row = conn.execute(sa.select(t).where(t.c.key == key)).one_or_none()
    return bool(changed), Incident.from_row(row) if row is not None else None


def record_deliveries(
    engine: sa.Engine, notice: Notification, results: Sequence[DeliveryResult], now: datetime
) -> None:
    """One ``alert_deliveries`` row per channel that was tried for ``notice``."""
    with engine.begin() as conn:
        conn.execute(
            sa.insert(alert_deliveries),
            [
                {
                    "incident_key": notice.key,
                    "episode": notice.episode,
                    "channel": r.channel,
                    "kind": notice.kind,
                    "status": r.status,
                    "attempts": r.attempts,
                    "notification_id": notice.id,
                    "error": r.error,
                    "at": now,
                }
                for r in results
            ],
        )


def delivery_counts(
    engine: sa.Engine, incident: Incident, kind: NotificationKind
) -> list[tuple[str, str, int]]:
    """(channel, status, count) of the deliveries of this episode's ``kind`` notice."""
    d = alert_deliveries
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(d.c.channel, d.c.status, sa.func.count())
            .where(d.c.incident_key == incident.key, d.c.episode == incident.episode, d.c.kind == kind)
            .group_by(d.c.channel, d.c.status)
        ).all()
    return [(channel, status, count) for channel, status, count in rows]


def claim_catch_up(
    engine: sa.Engine, incident: Incident, kind: NotificationKind, now: datetime, quiet_for: timedelta
) -> bool:
    """Claim the right to resend this episode's notice (one claimant when several sensors race)."""
    t = alert_incidents
    with engine.begin() as conn:
        claimed = conn.execute(
            sa.update(t)
            .where(
                t.c.key == incident.key,
                t.c.episode == incident.episode,
                t.c.status == ("open" if kind == "fire" else "resolved"),
                t.c.last_notified_at <= now - quiet_for,
            )
            .values(last_notified_at=now)
        ).rowcount
    return bool(claimed)


def get_incident(key: str, *, engine: sa.Engine | None = None) -> Incident | None:
    """The stored incident for an (already redacted) key, or None."""
    engine = engine or get_engine()
    with engine.connect() as conn:
        row = conn.execute(sa.select(alert_incidents).where(alert_incidents.c.key == key)).one_or_none()
    return Incident.from_row(row) if row is not None else None


def list_incidents(
    status: Literal["open", "resolved"] | None = "open", *, engine: sa.Engine | None = None
) -> list[Incident]:
    """Incidents (open ones by default), most recently seen first: for the status screen and sensors."""
    engine = engine or get_engine()
    t = alert_incidents
    query = sa.select(t).order_by(t.c.last_seen_at.desc(), t.c.key)
    if status is not None:
        query = query.where(t.c.status == status)
    with engine.connect() as conn:
        return [Incident.from_row(r) for r in conn.execute(query)]
