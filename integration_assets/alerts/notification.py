"""What a channel receives: one redacted :class:`Notification`, the :class:`Channel` protocol, and the errors a
channel raises (:class:`TransientDeliveryError`: retrying may help; :class:`TerminalDeliveryError`: it will not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from integration_assets.errors import IntegrationError, TerminalError, TransientError
from integration_assets.observability.redact import redact_text

NotificationKind = Literal["fire", "resolve"]
SCHEMA = "integration-assets.alert.v1"


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


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut (Slack blocks, mail subjects)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Channel(Protocol):
    """A destination for notifications. ``send`` returns when delivered, raises DeliveryError otherwise."""

    name: str

    def send(self, notification: Notification) -> None: ...
