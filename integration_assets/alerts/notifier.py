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

Every alert is redacted (``observability.redact``) before it is stored or sent: keys, texts and details
alike. The incident rows are ``alerts/incidents.py``'s, the per-channel retries ``alerts/delivery.py``'s.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from integration_assets.alerts import incidents as store
from integration_assets.alerts.channels import JsonlAlertLog, SlackWebhookChannel, WebhookChannel, http_client
from integration_assets.alerts.delivery import Deliverer, DeliveryResult, DeliveryRetry
from integration_assets.alerts.incidents import Action, Alert, Incident, list_incidents, stored_key
from integration_assets.alerts.mail import EmailChannel
from integration_assets.alerts.notification import Channel, Notification, NotificationKind
from integration_assets.observability.redact import redact, redact_text
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse.db import get_engine

log = logging.getLogger(__name__)


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
    def from_settings(cls, s: Settings) -> AlertConfig:
        """The INTEGRATION_ALERT_* variables (see settings.ENV_VARS)."""
        renotify = s.alert_renotify_seconds
        return cls(
            log_path=s.alert_log,
            webhook_url=s.alert_webhook_url,
            slack_webhook_url=s.alert_slack_webhook_url,
            smtp_host=s.alert_smtp_host,
            smtp_port=s.alert_smtp_port,
            smtp_username=s.alert_smtp_username,
            smtp_password=s.alert_smtp_password,
            smtp_from=s.alert_smtp_from,
            smtp_to=s.alert_smtp_to,
            smtp_starttls=s.alert_smtp_starttls,
            renotify_after=timedelta(seconds=renotify) if renotify > 0 else None,
        )

    @classmethod
    def from_env(cls) -> AlertConfig:
        """The configuration the environment describes now."""
        return cls.from_settings(get_settings())


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
        retry: DeliveryRetry | None = None,
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
        self.retry = retry or DeliveryRetry()
        # A channel owed a notice is retried only when the incident has not been notified for this long:
        # longer than one full delivery (retries + timeouts), so an in-flight send is not duplicated.
        self.catch_up_after = catch_up_after
        self.max_delivery_rounds = max_delivery_rounds
        self._clock = clock or (lambda: datetime.now(UTC))
        self._http = http
        self._deliverer = Deliverer(self.retry)

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
        a = store.redacted(alert)
        now = self._now()
        action, incident = store.record_firing(self.engine, a, now, self.renotify_after)
        log.info("alert %s: %s (episode %d, seen %d)", action, a.key, incident.episode, incident.fire_count)
        if action == "deduplicated":
            return Outcome(a.key, action, incident.episode, self._catch_up(incident, "fire"))
        notice = self._notice(incident, "fire", renotify=action == "renotified")
        return Outcome(a.key, action, incident.episode, self._deliver(notice, self.channels))

    def resolve(self, key: str, summary: str = "") -> Outcome:
        """Record that ``key``'s condition passes again; send one RESOLVED notice if its incident was open."""
        key = stored_key(key)
        summary = redact_text(summary) or "The condition passes again."
        changed, incident = store.record_resolved(self.engine, key, summary, self._now())
        if incident is None:
            return Outcome(key, "not_open", None)
        if not changed:
            return Outcome(key, "not_open", incident.episode, self._catch_up(incident, "resolve"))
        log.info("alert resolved: %s (episode %d)", key, incident.episode)
        notice = self._notice(incident, "resolve")
        return Outcome(key, "resolved", incident.episode, self._deliver(notice, self.channels))

    # -- reading state ------------------------------------------------------------------------------------

    def incident(self, key: str) -> Incident | None:
        """The incident for ``key`` (after redaction, as stored), or None if it never fired."""
        return store.get_incident(stored_key(key), engine=self.engine)

    def open_incidents(self) -> list[Incident]:
        return list_incidents("open", engine=self.engine)

    # -- internals ----------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return store.aware(self._clock())

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
        results = [self._deliverer.deliver(channel, notice) for channel in self.channels]
        return [r.channel for r in results if r.status == "sent"]

    def _deliver(self, notice: Notification, channels: Sequence[Channel]) -> tuple[DeliveryResult, ...]:
        results = tuple(self._deliverer.deliver(channel, notice) for channel in channels)
        if results:
            store.record_deliveries(self.engine, notice, results, self._now())
        return results

    def _catch_up(self, incident: Incident, kind: NotificationKind) -> tuple[DeliveryResult, ...]:
        """Send this episode's notice to channels that never got it (failed, or crashed before sending)."""
        rows = store.delivery_counts(self.engine, incident, kind)
        sent = {ch for ch, status, _ in rows if status == "sent"}
        failed = Counter({ch: n for ch, status, n in rows if status == "failed"})
        owed = [c for c in self.channels if c.name not in sent and failed[c.name] < self.max_delivery_rounds]
        if not owed:
            return ()
        if not store.claim_catch_up(self.engine, incident, kind, self._now(), self.catch_up_after):
            return ()
        log.info("alert catch-up: %s %s to %s", kind, incident.key, [c.name for c in owed])
        return self._deliver(self._notice(incident, kind), owed)
