"""Raise and resolve alerts: one notification per incident, to every configured channel, never leaking PII.

The Dagster sensors (later) call :meth:`Notifier.fire` on every tick a condition fails and
:meth:`Notifier.resolve` when it passes again. The notifier turns that stream of evaluations into incidents
(``alert_incidents``, one row per key):

- first failure -> incident ``open`` (episode 1), a FIRING notice to every channel;
- further failures while open -> ``last_seen_at``/``fire_count`` bumped, no message (unless the optional
  re-notify interval has passed, or a channel still owes this episode's notice, see "catch-up");
- resolve while open -> ``resolved``, one RESOLVED notice; resolve while not open -> nothing;
- failure after resolve -> re-opened as the next episode, a new FIRING notice.

State changes are committed *before* anything is sent, with atomic conditional statements (INSERT ... ON
CONFLICT DO NOTHING, UPDATE ... WHERE status = ...), so two sensors evaluating the same check at once send
one notice, not two. Each channel is retried on its own (tenacity, capped exponential backoff with jitter,
only for transient errors) and recorded in ``alert_deliveries``; a failing channel never stops the others.
A channel that is still owed the notice of an open episode (it failed, or the process died before sending)
is caught up on a later tick, at most ``max_delivery_rounds`` times.

Every alert is redacted (``redact.redact``) before it is stored or sent: keys, texts and details alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import httpx
import sqlalchemy as sa
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from integration_assets.alerts.channels import (
    Channel,
    DeliveryError,
    EmailChannel,
    JsonlAlertLog,
    Notification,
    NotificationKind,
    SlackWebhookChannel,
    WebhookChannel,
    http_client,
)
from integration_assets.alerts.redact import redact, redact_text
from integration_assets.settings import ENV_VARS, get_settings
from integration_assets.warehouse.db import get_engine, is_postgres
from integration_assets.warehouse.schema import KEY_LENGTH, alert_deliveries, alert_incidents

log = logging.getLogger(__name__)

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
class RetryPolicy:
    """Per-channel retries within one call (AWS Builders' Library: capped exponential backoff + jitter).

    Few attempts on purpose: a sensor tick has a time budget, and a channel still failing after them is
    caught up on a later tick anyway.
    """

    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 4.0
    jitter: float = 0.5
    max_elapsed: float = 20.0


@dataclass(frozen=True)
class DeliveryResult:
    channel: str
    status: Literal["sent", "failed"]
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What ``fire``/``resolve`` did: the incident transition and the deliveries it caused (maybe none)."""

    key: str
    action: Action
    episode: int | None
    deliveries: tuple[DeliveryResult, ...] = ()

    @property
    def notified(self) -> bool:
        return any(d.status == "sent" for d in self.deliveries)

    @property
    def failed_channels(self) -> tuple[str, ...]:
        return tuple(d.channel for d in self.deliveries if d.status == "failed")


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
            first_fired_at=_aware(m["first_fired_at"]),
            opened_at=_aware(m["opened_at"]),
            last_seen_at=_aware(m["last_seen_at"]),
            last_notified_at=_aware(m["last_notified_at"]),
            resolved_at=_aware(m["resolved_at"]) if m["resolved_at"] else None,
        )


def _env(name: str) -> str | None:
    """The value of a registered env var (settings.ENV_VARS), empty meaning unset."""
    value = os.environ.get(name)
    return value if value else ENV_VARS[name][0]


def _env_bool(name: str) -> bool:
    value = (_env(name) or "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class AlertConfig:
    """Which channels exist and how they are reached. Secrets are kept out of ``repr``."""

    log_path: Path
    webhook_url: str | None = field(default=None, repr=False)
    slack_webhook_url: str | None = field(default=None, repr=False)
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_starttls: bool = True
    renotify_after: timedelta | None = None

    @classmethod
    def from_env(cls) -> AlertConfig:
        """Read the INTEGRATION_ALERT_* variables (see settings.ENV_VARS)."""
        log_path = _env("INTEGRATION_ALERT_LOG")
        renotify = float(_env("INTEGRATION_ALERT_RENOTIFY_SECONDS") or 0)
        to = _env("INTEGRATION_ALERT_SMTP_TO") or ""
        return cls(
            log_path=Path(log_path) if log_path else get_settings().data_dir / "alerts.jsonl",
            webhook_url=_env("INTEGRATION_ALERT_WEBHOOK_URL"),
            slack_webhook_url=_env("INTEGRATION_ALERT_SLACK_WEBHOOK_URL"),
            smtp_host=_env("INTEGRATION_ALERT_SMTP_HOST"),
            smtp_port=int(_env("INTEGRATION_ALERT_SMTP_PORT") or 587),
            smtp_username=_env("INTEGRATION_ALERT_SMTP_USERNAME"),
            smtp_password=_env("INTEGRATION_ALERT_SMTP_PASSWORD"),
            smtp_from=_env("INTEGRATION_ALERT_SMTP_FROM"),
            smtp_to=tuple(a.strip() for a in to.replace(";", ",").split(",") if a.strip()),
            smtp_starttls=_env_bool("INTEGRATION_ALERT_SMTP_STARTTLS"),
            renotify_after=timedelta(seconds=renotify) if renotify > 0 else None,
        )


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back naive (everything we write is UTC); Postgres in the session's time zone.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _clip(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


def _details_json(details: Mapping[str, Any]) -> str:
    text = json.dumps(details, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= MAX_DETAILS_CHARS:
        return text
    return json.dumps(
        {"_truncated": True, "_size_chars": len(text), "keys": sorted(str(k) for k in details)[:50]},
        sort_keys=True,
    )


def _redacted(alert: Alert) -> Alert:
    """The alert as it may be stored and sent: every text and the details scrubbed."""
    return Alert(
        key=_clip(redact_text(alert.key), KEY_LENGTH) or "-",
        severity=alert.severity,
        title=redact_text(alert.title),
        summary=redact_text(alert.summary),
        source_system=redact_text(alert.source_system) if alert.source_system else None,
        entity=redact_text(alert.entity) if alert.entity else None,
        check_name=redact_text(alert.check_name) if alert.check_name else None,
        details=redact(dict(alert.details)),
        runbook=redact_text(alert.runbook),
    )


class Notifier:
    """Turns fire/resolve calls into incidents and notifications (see the module docstring).

    Build it with :meth:`from_env` (channels from INTEGRATION_ALERT_* variables) or pass channels yourself.
    Close it (or use it as a context manager) to release the HTTP client.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        warehouse_url: str | None = None,
        renotify_after: timedelta | None = None,
        retry: RetryPolicy | None = None,
        catch_up_after: timedelta = timedelta(seconds=60),
        max_delivery_rounds: int = 5,
        clock: Callable[[], datetime] | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        self.channels: tuple[Channel, ...] = tuple(channels)
        self.engine = get_engine(warehouse_url)
        self.renotify_after = renotify_after
        self.retry = retry or RetryPolicy()
        # A channel owed a notice is retried only when the incident has not been notified for this long:
        # longer than one full delivery (retries + timeouts), so an in-flight send is not duplicated.
        self.catch_up_after = catch_up_after
        self.max_delivery_rounds = max_delivery_rounds
        self._clock = clock or (lambda: datetime.now(UTC))
        self._http = http
        self._backoff = wait_exponential_jitter(
            initial=self.retry.initial_wait, max=self.retry.max_wait, jitter=self.retry.jitter
        )

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: AlertConfig, *, transport: httpx.BaseTransport | None = None, **kwargs: Any
    ) -> Notifier:
        """Channels from ``config``: the JSON-lines log always, webhook/Slack/e-mail when configured."""
        email = None
        if config.smtp_host:
            email = EmailChannel(
                host=config.smtp_host,
                port=config.smtp_port,
                from_addr=config.smtp_from or "",
                to_addrs=config.smtp_to,
                username=config.smtp_username,
                password=config.smtp_password,
                starttls=config.smtp_starttls,
            )
        channels: list[Channel] = [JsonlAlertLog(config.log_path)]
        http = None
        if config.webhook_url or config.slack_webhook_url:
            http = http_client(transport=transport)
        try:
            if config.webhook_url and http is not None:
                channels.append(WebhookChannel(config.webhook_url, http))
            if config.slack_webhook_url and http is not None:
                channels.append(SlackWebhookChannel(config.slack_webhook_url, http))
        except ValueError:
            if http is not None:
                http.close()
            raise
        if email is not None:
            channels.append(email)
        kwargs.setdefault("renotify_after", config.renotify_after)
        return cls(channels, http=http, **kwargs)

    @classmethod
    def from_env(cls, **kwargs: Any) -> Notifier:
        """The notifier the environment describes (INTEGRATION_ALERT_*, warehouse from settings)."""
        return cls.from_config(AlertConfig.from_env(), **kwargs)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the two calls the sensors make -------------------------------------------------------------------

    def fire(self, alert: Alert) -> Outcome:
        """Record that ``alert``'s condition fails now; notify if this opens (or re-opens) its incident."""
        a = _redacted(alert)
        now = self._now()
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
        with self.engine.begin() as conn:
            new = {"key": a.key, "status": "open", "episode": 1, "fire_count": 1, "first_fired_at": now}
            new |= {"opened_at": now, "last_notified_at": now, **latest}
            # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT DO NOTHING.
            if conn.execute(self._insert_ignore(t).values(**new).returning(t.c.key)).first() is not None:
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
                    self.renotify_after is not None
                    and conn.execute(
                        sa.update(t)
                        .where(
                            t.c.key == a.key,
                            t.c.status == "open",
                            t.c.last_notified_at <= now - self.renotify_after,
                        )
                        .values(last_notified_at=now)
                    ).rowcount
                ):
                    action = "renotified"
            incident = Incident.from_row(conn.execute(sa.select(t).where(t.c.key == a.key)).one())
        log.info("alert %s: %s (episode %d, seen %d)", action, a.key, incident.episode, incident.fire_count)
        if action == "deduplicated":
            return Outcome(a.key, action, incident.episode, self._catch_up(incident, "fire"))
        notice = self._notice(incident, "fire", renotify=action == "renotified")
        return Outcome(a.key, action, incident.episode, self._deliver(notice, self.channels))

    def resolve(self, key: str, summary: str = "") -> Outcome:
        """Record that ``key``'s condition passes again; send one RESOLVED notice if its incident was open."""
        key = _clip(redact_text(key), KEY_LENGTH) or "-"
        summary = redact_text(summary) or "The condition passes again."
        now = self._now()
        t = alert_incidents
        with self.engine.begin() as conn:
            changed = conn.execute(
                sa.update(t)
                .where(t.c.key == key, t.c.status == "open")
                .values(status="resolved", resolved_at=now, last_notified_at=now, last_summary=summary)
            ).rowcount
            row = conn.execute(sa.select(t).where(t.c.key == key)).one_or_none()
        if row is None:
            return Outcome(key, "not_open", None)
        incident = Incident.from_row(row)
        if not changed:
            return Outcome(key, "not_open", incident.episode, self._catch_up(incident, "resolve"))
        log.info("alert resolved: %s (episode %d)", key, incident.episode)
        notice = self._notice(incident, "resolve")
        return Outcome(key, "resolved", incident.episode, self._deliver(notice, self.channels))

    # -- reading state ------------------------------------------------------------------------------------

    def incident(self, key: str) -> Incident | None:
        """The incident for ``key`` (after redaction, as stored), or None if it never fired."""
        return get_incident(_clip(redact_text(key), KEY_LENGTH) or "-", engine=self.engine)

    def open_incidents(self) -> list[Incident]:
        return list_incidents("open", engine=self.engine)

    # -- internals ----------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return _aware(self._clock())

    def _insert_ignore(self, table: sa.Table) -> Any:
        if is_postgres(self.engine):
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing(index_elements=["key"])
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing(index_elements=["key"])
        raise NotImplementedError(f"alerts support SQLite and PostgreSQL, not {self.engine.dialect.name}")

    def _notice(self, incident: Incident, kind: NotificationKind, *, renotify: bool = False) -> Notification:
        # Stable per (incident, episode, kind): a retry or a catch-up of the same notice carries the same id.
        seed = f"{incident.key}\0{incident.episode}\0{kind}"
        if renotify:
            seed += f"\0{incident.last_notified_at.isoformat()}"
        at = incident.resolved_at if kind == "resolve" and incident.resolved_at else incident.last_seen_at
        return Notification(
            id=hashlib.sha256(seed.encode()).hexdigest()[:32],
            kind=kind,
            key=incident.key,
            severity=incident.severity,
            title=incident.title,
            summary=incident.last_summary,
            source_system=incident.source_system,
            entity=incident.entity,
            check_name=incident.check_name,
            details=incident.details,
            runbook=incident.runbook,
            episode=incident.episode,
            fire_count=incident.fire_count,
            opened_at=incident.opened_at,
            at=at,
            renotify=renotify,
        )

    def _wait(self, state: RetryCallState) -> float:
        delay = float(self._backoff(state))
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:  # honour a receiver's Retry-After (RFC 6585 §4), within our own cap
            delay = max(delay, min(float(retry_after), self.retry.max_wait))
        return delay

    def _deliver_one(self, channel: Channel, notice: Notification) -> DeliveryResult:
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            channel.send(notice)

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts) | stop_after_delay(self.retry.max_elapsed),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.transient),
            reraise=True,
        )
        try:
            retrying(attempt)
        except DeliveryError as exc:
            error = f"{'transient' if exc.transient else 'terminal'}: {exc.detail}"
        except Exception as exc:  # noqa: BLE001 - bulkhead: a bug in one channel must not silence the others
            log.exception("alert channel %s crashed on %s", channel.name, notice.key)
            error = f"unexpected {type(exc).__name__}: {redact_text(str(exc))}"
        else:
            return DeliveryResult(channel.name, "sent", attempts)
        log.warning(
            "alert %s to %s failed after %d attempt(s): %s", notice.kind, channel.name, attempts, error
        )
        return DeliveryResult(channel.name, "failed", attempts, error)

    def send_unrecorded(self, alert: Alert, kind: NotificationKind, *, opened_at: datetime) -> list[str]:
        """Send one notice to every channel without touching the warehouse; the channels it reached.

        For alerts about the warehouse being unreachable: the incident bookkeeping needs the warehouse, so the
        notice is built the way ``_notice`` builds it (redacted, a stable id per incident episode and kind) and
        handed to the same channels with the same retries. Deduplication is the caller's.
        """
        details = redact(dict(alert.details))
        notice = Notification(
            id=hashlib.sha256(f"{alert.key}\0{opened_at.isoformat()}\0{kind}".encode()).hexdigest()[:32],
            kind=kind,
            key=redact_text(alert.key),
            severity=alert.severity,
            title=redact_text(alert.title),
            summary=redact_text(alert.summary),
            source_system=alert.source_system,
            entity=alert.entity,
            check_name=alert.check_name,
            details=details if isinstance(details, dict) else {},
            runbook=redact_text(alert.runbook),
            episode=1,
            fire_count=1,
            opened_at=opened_at,
            at=self._now(),
        )
        results = [self._deliver_one(channel, notice) for channel in self.channels]
        return [r.channel for r in results if r.status == "sent"]

    def _deliver(self, notice: Notification, channels: Sequence[Channel]) -> tuple[DeliveryResult, ...]:
        results = tuple(self._deliver_one(channel, notice) for channel in channels)
        if results:
            now = self._now()
            with self.engine.begin() as conn:
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
        return results

    def _catch_up(self, incident: Incident, kind: NotificationKind) -> tuple[DeliveryResult, ...]:
        """Send this episode's notice to channels that never got it (failed, or crashed before sending)."""
        d = alert_deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.channel, d.c.status, sa.func.count())
                .where(d.c.incident_key == incident.key, d.c.episode == incident.episode, d.c.kind == kind)
                .group_by(d.c.channel, d.c.status)
            ).all()
        sent = {ch for ch, status, _ in rows if status == "sent"}
        failed = Counter({ch: n for ch, status, n in rows if status == "failed"})
        owed = [c for c in self.channels if c.name not in sent and failed[c.name] < self.max_delivery_rounds]
        if not owed:
            return ()
        now = self._now()
        t = alert_incidents
        with self.engine.begin() as conn:
            claimed = conn.execute(
                sa.update(t)
                .where(
                    t.c.key == incident.key,
                    t.c.episode == incident.episode,
                    t.c.status == ("open" if kind == "fire" else "resolved"),
                    t.c.last_notified_at <= now - self.catch_up_after,
                )
                .values(last_notified_at=now)
            ).rowcount
        if not claimed:
            return ()
        log.info("alert catch-up: %s %s to %s", kind, incident.key, [c.name for c in owed])
        return self._deliver(self._notice(incident, kind), owed)


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
