"""Where alerts go: a JSON-lines log (always), a generic webhook, a Slack incoming webhook, SMTP e-mail.

A channel receives a :class:`Notification` that the notifier has already redacted, renders it in its own
wire format and either returns (delivered) or raises a :class:`DeliveryError` that says whether a retry
can help (:class:`TransientDeliveryError`: timeouts, refused connections, 429/5xx, SMTP 4xx) or not
(:class:`TerminalDeliveryError`: 4xx, a redirect, bad credentials, STARTTLS unavailable). Retrying,
recording and isolating one channel from another is the notifier's job, not the channel's.

All HTTP goes through :func:`http_client`: default timeouts, redirects never followed (OWASP SSRF cheat
sheet: a webhook target must not bounce us elsewhere), one injectable transport as the test/IO seam.
Channel errors never contain the webhook URL (for Slack the URL *is* the credential).
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import json
import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from integration_assets.alerts.redact import redact_text
from integration_assets.errors import IntegrationError, TerminalError, TransientError

log = logging.getLogger(__name__)

NotificationKind = Literal["fire", "resolve"]
SCHEMA = "integration-assets.alert.v1"

# An alert post is a few KB. A receiver that needs more than 5 s to accept it is failing, and a Dagster
# sensor tick has 60 s in total (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS default) for every alert it raises.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
USER_AGENT = "integration-assets-alerts/1"
SMTP_TIMEOUT_SECONDS = 10.0

# Slack Block Kit limits (docs.slack.dev, block reference): header text 150 chars, section text 3000,
# section fields 10 items of 2000 chars each.
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELD_MAX = 2000


class DeliveryError(IntegrationError):
    """A channel could not deliver a notification; ``transient`` says whether retrying may help."""

    transient: ClassVar[bool] = False

    def __init__(self, channel: str, message: str, *, retry_after: float | None = None) -> None:
        self.channel = channel
        self.detail = redact_text(message)
        self.retry_after = retry_after
        super().__init__(f"{channel}: {self.detail}")


class TransientDeliveryError(DeliveryError, TransientError):
    """The receiver is down, slow or throttling: the same notification may go through later."""

    transient = True


class TerminalDeliveryError(DeliveryError, TerminalError):
    """The receiver rejects this notification or our configuration: retrying will not help."""

    transient = False


@dataclass(frozen=True)
class Notification:
    """One message about one incident, already redacted: what every channel renders.

    ``id`` is stable across retries and catch-up of the same notice, so a receiver can drop duplicates.
    """

    id: str
    kind: NotificationKind
    key: str
    severity: str
    title: str
    summary: str
    source_system: str | None
    entity: str | None
    check_name: str | None
    details: Mapping[str, Any]
    runbook: str
    episode: int
    fire_count: int
    opened_at: datetime
    at: datetime
    renotify: bool = False

    @property
    def headline(self) -> str:
        """One-line subject: ``[FIRING] [ERROR] title``, ``[STILL FIRING] ...`` or ``[RESOLVED] title``."""
        if self.kind == "resolve":
            return f"[RESOLVED] {self.title}"
        state = "STILL FIRING" if self.renotify else "FIRING"
        return f"[{state}] [{self.severity.upper()}] {self.title}"

    @property
    def where(self) -> str:
        return " / ".join(p for p in (self.source_system, self.entity) if p) or "-"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document posted to webhooks and written to the alert log."""
        return {
            "schema": SCHEMA,
            "id": self.id,
            "kind": self.kind,
            "status": "resolved" if self.kind == "resolve" else "firing",
            "renotify": self.renotify,
            "key": self.key,
            "severity": self.severity,
            "title": self.title,
            "summary": self.summary,
            "source_system": self.source_system,
            "entity": self.entity,
            "check_name": self.check_name,
            "details": dict(self.details),
            "runbook": self.runbook,
            "episode": self.episode,
            "fire_count": self.fire_count,
            "opened_at": self.opened_at.isoformat(),
            "at": self.at.isoformat(),
        }

    def render_text(self) -> str:
        """Plain-text body (e-mail): headline, summary, the facts a responder needs, then the details."""
        lines = [self.headline, "", self.summary or "(no summary)", ""]
        lines.append(f"Key:       {self.key}")
        lines.append(f"Severity:  {self.severity}")
        lines.append(f"Source:    {self.where}")
        if self.check_name:
            lines.append(f"Check:     {self.check_name}")
        lines.append(f"Opened:    {self.opened_at.isoformat()} (episode {self.episode})")
        if self.kind == "resolve":
            lines.append(f"Resolved:  {self.at.isoformat()} after {self.fire_count} failing evaluation(s)")
        else:
            lines.append(f"Seen:      {self.fire_count} time(s), last {self.at.isoformat()}")
        if self.runbook:
            lines.append(f"Runbook:   {self.runbook}")
        if self.details:
            lines += ["", "Details:", json.dumps(self.details, indent=2, sort_keys=True, ensure_ascii=False)]
        return "\n".join(lines) + "\n"


class Channel(Protocol):
    """A destination for notifications. ``send`` returns when delivered, raises DeliveryError otherwise."""

    name: str

    def send(self, notification: Notification) -> None: ...


def http_client(
    *, timeout: httpx.Timeout = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """The one HTTP client factory for alert channels: timeouts on, redirects off, our User-Agent."""
    return httpx.Client(
        timeout=timeout,
        follow_redirects=False,
        transport=transport,
        headers={"User-Agent": USER_AGENT},
    )


def _check_http_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an http(s) URL with a host")


def _retry_after_seconds(value: str | None) -> float | None:
    """RFC 9110 §10.2.3: Retry-After is delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _post_json(client: httpx.Client, channel: str, url: str, body: Mapping[str, Any], notice_id: str) -> None:
    """POST ``body`` and classify the outcome; the URL never appears in an error."""
    try:
        _send_json(client, channel, url, body, notice_id)
    except DeliveryError as exc:
        if url in exc.detail:
            raise type(exc)(channel, exc.detail.replace(url, "<url>"), retry_after=exc.retry_after) from None
        raise


def _send_json(client: httpx.Client, channel: str, url: str, body: Mapping[str, Any], notice_id: str) -> None:
    try:
        response = client.post(
            url,
            content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": notice_id},
        )
    except httpx.UnsupportedProtocol as exc:
        raise TerminalDeliveryError(channel, f"unsupported URL scheme ({type(exc).__name__})") from None
    except httpx.TimeoutException as exc:
        raise TransientDeliveryError(channel, f"timed out ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        # The message is the OS error ("Connection refused"), not the URL.
        raise TransientDeliveryError(channel, f"{type(exc).__name__}: {exc}") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    snippet = response.text[:200]
    if 300 <= status < 400:
        raise TerminalDeliveryError(channel, f"HTTP {status}: redirect not followed")
    if status in (408, 425, 429) or status >= 500:
        raise TransientDeliveryError(
            channel,
            f"HTTP {status}: {snippet}",
            retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
        )
    raise TerminalDeliveryError(channel, f"HTTP {status}: {snippet}")


@dataclass
class JsonlAlertLog:
    """Appends one JSON object per notification to a local file: the record that exists even when every
    remote channel is down. One ``write`` on an O_APPEND descriptor per line, so concurrent writers (several
    sensors, the CLI) never interleave within a line; fsync because this is the audit trail of alerts."""

    path: Path
    name: str = "log"

    def send(self, notification: Notification) -> None:
        # ensure_ascii: the only line break in the file is the record separator (U+2028 stays escaped).
        line = (json.dumps(notification.to_dict(), ensure_ascii=True, sort_keys=True) + "\n").encode("ascii")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise TransientDeliveryError(
                self.name, f"cannot append to the alert log: {exc.strerror}"
            ) from None


@dataclass
class WebhookChannel:
    """POSTs the notification's JSON document (``Notification.to_dict``) to a URL of your choice."""

    url: str = field(repr=False)
    client: httpx.Client = field(repr=False)
    name: str = "webhook"

    def __post_init__(self) -> None:
        _check_http_url(self.url, "INTEGRATION_ALERT_WEBHOOK_URL")

    def send(self, notification: Notification) -> None:
        _post_json(self.client, self.name, self.url, notification.to_dict(), notification.id)


def _slack_escape(text: str) -> str:
    # Slack "Formatting text": &, < and > are control characters in mrkdwn and must be escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(n: Notification) -> dict[str, Any]:
    """Slack incoming-webhook body: ``text`` (notification/fallback) plus Block Kit ``blocks``."""
    icon = (
        ":white_check_mark:"
        if n.kind == "resolve"
        else {"critical": ":rotating_light:", "error": ":red_circle:", "warning": ":warning:"}.get(
            n.severity, ":grey_question:"
        )
    )
    summary = _slack_escape(n.summary) if n.summary else "_no summary_"
    fields = [
        f"*Severity*\n{n.severity}",
        f"*Source*\n{_slack_escape(n.where)}",
        f"*Check*\n{_slack_escape(n.check_name or '-')}",
        f"*Episode*\n{n.episode} (seen {n.fire_count}x)",
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(n.headline, SLACK_HEADER_MAX), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(summary, SLACK_SECTION_MAX)}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": _clip(f, SLACK_FIELD_MAX)} for f in fields],
        },
    ]
    if n.details and n.kind == "fire":
        details = _slack_escape(json.dumps(n.details, indent=1, sort_keys=True, ensure_ascii=False))
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "```" + _clip(details, SLACK_SECTION_MAX - 6) + "```"},
            }
        )
    context = f"key `{_slack_escape(n.key)}`"
    if n.runbook:
        if n.runbook.startswith(("https://", "http://")) and not any(c in n.runbook for c in "<>| "):
            context += f" · <{n.runbook}|runbook>"
        else:
            context += f" · runbook: {_slack_escape(n.runbook)}"
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(context, SLACK_FIELD_MAX)}]}
    )
    text = _clip(f"{icon} {_slack_escape(n.headline)}: {summary}", SLACK_SECTION_MAX)
    return {"text": text, "blocks": blocks}


@dataclass
class SlackWebhookChannel:
    """Posts to a Slack incoming webhook (the URL is the credential: never logged, never in errors)."""

    url: str = field(repr=False)
    client: httpx.Client = field(repr=False)
    name: str = "slack"

    def __post_init__(self) -> None:
        _check_http_url(self.url, "INTEGRATION_ALERT_SLACK_WEBHOOK_URL")

    def send(self, notification: Notification) -> None:
        _post_json(self.client, self.name, self.url, slack_payload(notification), notification.id)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class EmailChannel:
    """Sends a plain-text e-mail per notification over SMTP, with STARTTLS when asked for.

    Credentials are never sent in clear text to anything but a loopback relay: a username without STARTTLS
    is a configuration error. Fire and resolve mails of one episode share a ``References`` header, so mail
    clients thread them.
    """

    host: str
    port: int
    from_addr: str
    to_addrs: Sequence[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout: float = SMTP_TIMEOUT_SECONDS
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    name: str = "email"

    def __post_init__(self) -> None:
        if not self.to_addrs:
            raise ValueError("INTEGRATION_ALERT_SMTP_TO needs at least one address")
        if not self.from_addr:
            raise ValueError("INTEGRATION_ALERT_SMTP_FROM is required for e-mail alerts")
        if self.username and not self.starttls and not _is_loopback(self.host):
            raise ValueError(
                "refusing to send SMTP credentials without STARTTLS (set INTEGRATION_ALERT_SMTP_STARTTLS)"
            )

    def build_message(self, n: Notification) -> EmailMessage:
        domain = self.from_addr.rpartition("@")[2] or "integration-assets.local"
        thread = hashlib.sha256(n.key.encode()).hexdigest()[:16]
        msg = EmailMessage()
        msg["Subject"] = _clip(n.headline, 200)
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to_addrs)
        msg["Date"] = email.utils.format_datetime(n.at)
        msg["Message-ID"] = email.utils.make_msgid(idstring=n.id[:16], domain=domain)
        msg["References"] = f"<incident-{thread}-{n.episode}@{domain}>"
        msg["X-Alert-Key"] = n.key
        msg["X-Alert-Kind"] = n.kind
        msg["X-Alert-Severity"] = n.severity
        msg.set_content(n.render_text())
        return msg

    def send(self, notification: Notification) -> None:
        msg = self.build_message(notification)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPNotSupportedError as exc:
            raise TerminalDeliveryError(self.name, f"server does not support it: {exc}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            cls = TransientDeliveryError if all(400 <= c < 500 for c in codes) else TerminalDeliveryError
            raise cls(self.name, f"all recipients refused (codes {sorted(set(codes))})") from None
        except smtplib.SMTPResponseException as exc:
            cls = TransientDeliveryError if 400 <= exc.smtp_code < 500 else TerminalDeliveryError
            raise cls(self.name, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientDeliveryError(self.name, f"server disconnected: {exc}") from None
        except smtplib.SMTPException as exc:
            raise TerminalDeliveryError(self.name, f"{type(exc).__name__}: {exc}") from None
        except ssl.SSLError as exc:  # before OSError: a certificate problem is configuration, not an outage
            raise TerminalDeliveryError(self.name, f"TLS failed: {exc}") from None
        except OSError as exc:  # refused, unreachable, timed out
            raise TransientDeliveryError(self.name, f"{type(exc).__name__}: {exc}") from None
        if refused:
            log.warning("alert mail refused for %d of %d recipients", len(refused), len(self.to_addrs))
