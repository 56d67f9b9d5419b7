"""Connector HTTP health: responses counted per source system and minute, and the "sustained 429/5xx" rule.

Connectors record every response they get through the recorder their caller passes to the shared HTTP
client (:func:`warehouse_status_recorder`: ``record_http_status``, with ``None`` for a timeout / refused
connection). A retried request counts
once per attempt: that is what the provider saw. The alert sensor ``connector_http_error_alert`` evaluates
:func:`http_error_health` every minute.

Sustained, not a blip: within ``window`` at least ``min_errors`` throttled (429) or failed (5xx, transport)
responses, making up at least ``error_rate`` of all calls, in at least ``min_minutes`` distinct minutes
(a burst inside one minute is what the client's backoff absorbs). Healthy again when the error share in
the window drops below ``clear_rate``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from integration_assets.policies import HttpErrorPolicy
from integration_assets.quality.outcome import aware, utcnow
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import connector_http_stats

log = logging.getLogger(__name__)

ERROR_CLASSES = ("429", "5xx", "transport")


def status_class(status: int | None) -> str:
    """The bucket of one response: 2xx/3xx/4xx, 429 and 5xx apart, ``transport`` when there was no response."""
    if status is None:
        return "transport"
    if status == 429:
        return "429"
    if 200 <= status < 600:
        return f"{status // 100}xx"
    return "transport"


def record_http_status(
    source_system: str,
    status: int | None,
    *,
    engine: sa.Engine | None = None,
    at: datetime | None = None,
    count: int = 1,
) -> None:
    """Count one (or ``count``) connector response(s) of ``source_system`` in the current minute."""
    engine = engine or get_engine()
    minute = aware(at or utcnow()).replace(second=0, microsecond=0)  # type: ignore[union-attr]
    t = connector_http_stats
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(t)
    stmt = insert.values(
        source_system=source_system[:32], minute=minute, status_class=status_class(status), count=count
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.source_system, t.c.minute, t.c.status_class],
        set_={"count": t.c.count + stmt.excluded.count},
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def warehouse_status_recorder(system: str, engine: sa.Engine | None = None) -> Callable[[int | None], None]:
    """A connector's status recorder (``connectors._http.StatusRecorder``) counting in ``connector_http_stats``.

    Built by whoever runs a pull (the pull job, the CLI) and passed to the client, so connectors do not import
    quality. A warehouse that cannot take the count does not stop a pull (the pull does not need the
    warehouse); the first failure is logged as a warning, later ones at debug level.
    """
    warned = False

    def record(status: int | None) -> None:
        nonlocal warned
        try:
            record_http_status(system, status, engine=engine)
        except sa.exc.SQLAlchemyError as exc:
            log.log(
                logging.DEBUG if warned else logging.WARNING,
                "%s: could not record HTTP status %s for the connector health sensor (%s)",
                system,
                status,
                type(exc).__name__,
            )
            warned = True

    return record


@dataclass(frozen=True)
class HttpHealth:
    source_system: str
    requests: int
    errors: int
    by_class: dict[str, int]
    error_minutes: int
    sustained: bool
    cleared: bool

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_system": self.source_system,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "by_class": self.by_class,
            "error_minutes": self.error_minutes,
        }


def http_error_health(
    conn: sa.Connection, policy: HttpErrorPolicy, *, now: datetime | None = None
) -> list[HttpHealth]:
    """Per source system with calls in the window: is it failing in a sustained way, or healthy again?"""
    now = aware(now or utcnow())
    start = now - policy.window  # type: ignore[operator]
    t = connector_http_stats
    rows = conn.execute(
        sa.select(t.c.source_system, t.c.minute, t.c.status_class, t.c.count).where(t.c.minute > start)
    ).all()
    per: dict[str, dict[str, Any]] = {}
    for system, minute, cls, n in rows:
        p = per.setdefault(system, {"by_class": {}, "error_minutes": set()})
        p["by_class"][cls] = p["by_class"].get(cls, 0) + int(n)
        if cls in ERROR_CLASSES and n:
            p["error_minutes"].add(aware(minute))
    out = []
    for system, p in sorted(per.items()):
        requests = sum(p["by_class"].values())
        errors = sum(p["by_class"].get(c, 0) for c in ERROR_CLASSES)
        rate = errors / requests if requests else 0.0
        sustained = (
            errors >= policy.min_errors
            and rate >= policy.error_rate
            and len(p["error_minutes"]) >= policy.min_minutes
        )
        out.append(
            HttpHealth(
                system,
                requests,
                errors,
                dict(sorted(p["by_class"].items())),
                len(p["error_minutes"]),
                sustained,
                cleared=rate < policy.clear_rate,
            )
        )
    return out


def prune(conn: sa.Connection, policy: HttpErrorPolicy, *, now: datetime | None = None) -> int:
    """Drop counts older than the retention; returns the rows removed."""
    cutoff = aware(now or utcnow()) - policy.retention  # type: ignore[operator]
    return int(
        conn.execute(connector_http_stats.delete().where(connector_http_stats.c.minute < cutoff)).rowcount
        or 0
    )
