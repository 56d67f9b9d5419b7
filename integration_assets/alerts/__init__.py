"""Alerts: incidents raised and resolved by the Dagster sensors, delivered to the configured channels.

Plain Python (no Dagster import). The sensors call ``Notifier.from_env()`` and then ``fire(Alert(...))``
while a condition fails and ``resolve(key, summary)`` once it passes; see ``notifier`` for the semantics.

Names are imported lazily: ``observability.logging`` uses ``alerts.redact`` and must not pull the
warehouse layer (and its own logging) in with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration_assets.alerts.channels import (
        Channel,
        DeliveryError,
        EmailChannel,
        JsonlAlertLog,
        Notification,
        SlackWebhookChannel,
        TerminalDeliveryError,
        TransientDeliveryError,
        WebhookChannel,
        http_client,
    )
    from integration_assets.alerts.notifier import (
        Alert,
        AlertConfig,
        DeliveryResult,
        Incident,
        Notifier,
        Outcome,
        RetryPolicy,
        Severity,
        get_incident,
        list_incidents,
    )
    from integration_assets.alerts.redact import redact, redact_text

_EXPORTS = {
    "channels": (
        "Channel",
        "DeliveryError",
        "EmailChannel",
        "JsonlAlertLog",
        "Notification",
        "SlackWebhookChannel",
        "TerminalDeliveryError",
        "TransientDeliveryError",
        "WebhookChannel",
        "http_client",
    ),
    "notifier": (
        "Alert",
        "AlertConfig",
        "DeliveryResult",
        "Incident",
        "Notifier",
        "Outcome",
        "RetryPolicy",
        "Severity",
        "get_incident",
        "list_incidents",
    ),
    "redact": ("redact", "redact_text"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Alert",
    "AlertConfig",
    "Channel",
    "DeliveryError",
    "DeliveryResult",
    "EmailChannel",
    "Incident",
    "JsonlAlertLog",
    "Notification",
    "Notifier",
    "Outcome",
    "RetryPolicy",
    "Severity",
    "SlackWebhookChannel",
    "TerminalDeliveryError",
    "TransientDeliveryError",
    "WebhookChannel",
    "get_incident",
    "http_client",
    "list_incidents",
    "redact",
    "redact_text",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
