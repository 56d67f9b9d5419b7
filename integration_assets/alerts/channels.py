"""Where alerts go: a JSON-lines log (always), a generic webhook, a Slack incoming webhook (SMTP e-mail is
in ``alerts/email.py``).

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
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from integration_assets.alerts.notification import (
    DeliveryError,
    Notification,
    TerminalDeliveryError,
    TransientDeliveryError,
    clip,
)

log = logging.getLogger(__name__)

# An alert post is a few KB. A receiver that needs more than 5 s to accept it is failing, and a Dagster
# sensor tick has 60 s in total (DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS default) for every alert it raises.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
USER_AGENT = "integration-assets-alerts/1"

# Slack Block Kit limits (docs.slack.dev, block reference): header text 150 chars, section text 3000,
# section fields 10 items of 2000 chars each.
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELD_MAX = 2000


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
            "text": {"type": "plain_text", "text": clip(n.headline, SLACK_HEADER_MAX), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(summary, SLACK_SECTION_MAX)}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": clip(f, SLACK_FIELD_MAX)} for f in fields],
        },
    ]
    if n.details and n.kind == "fire":
        details = _slack_escape(json.dumps(n.details, indent=1, sort_keys=True, ensure_ascii=False))
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "```" + clip(details, SLACK_SECTION_MAX - 6) + "```"},
            }
        )
    context = f"key `{_slack_escape(n.key)}`"
    if n.runbook:
        if n.runbook.startswith(("https://", "http://")) and not any(c in n.runbook for c in "<>| "):
            context += f" · <{n.runbook}|runbook>"
        else:
            context += f" · runbook: {_slack_escape(n.runbook)}"
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(context, SLACK_FIELD_MAX)}]}
    )
    text = clip(f"{icon} {_slack_escape(n.headline)}: {summary}", SLACK_SECTION_MAX)
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
