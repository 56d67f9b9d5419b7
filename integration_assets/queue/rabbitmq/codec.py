"""How an event travels as an AMQP message, and back: properties, ``x-ia-*`` headers, dead-letter records.

The idempotency key is the ``message_id``, the event type the ``type``; our metadata (source, received_at,
non-secret request headers, attempts spent by earlier copies) travels in ``x-ia-*`` headers. Attempts of a
delivery = ``x-ia-attempts`` + ``x-delivery-count`` (returns of this copy: crash, channel close) + 1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pika

from integration_assets.queue.base import SOURCE_RE, InvalidMessage, Message, QueueDeadLetter

# Headers the broker adds on (re)delivery and dead-lettering; never copied into a republished message.
BROKER_HEADERS = (
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)
# Why the broker dead-lettered a message, as the dead letter's check name and reason.
_BROKER_REASONS = {
    "rejected": "rejected by a consumer without requeue",
    "expired": "expired in the queue (message TTL)",
    "maxlen": "dropped from a full queue (x-max-length)",
}


def text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def as_int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def message_properties(
    m: Message, attempts: int, extra: Mapping[str, Any] | None = None
) -> pika.BasicProperties:
    """AMQP properties of an event: persistent, the idempotency key as message_id, the event type as type,
    and our metadata (source, received_at, non-secret headers, attempts so far) in x-ia-* headers."""
    headers: dict[str, Any] = {
        "x-ia-source": m.source,
        "x-ia-received-at": m.received_at.isoformat(),
        "x-ia-headers": json.dumps(dict(m.headers), sort_keys=True),
        "x-ia-attempts": attempts,
    }
    if extra:
        headers.update(extra)
    return pika.BasicProperties(
        message_id=m.id,
        type=m.event_type,
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        timestamp=int(m.received_at.timestamp()),
        app_id="integration_assets",
        headers=headers,
    )


def replace_properties(props: pika.BasicProperties, **changes: Any) -> pika.BasicProperties:
    """A copy of AMQP properties with some fields changed."""
    fields = {
        name: getattr(props, name)
        for name in (
            "content_type",
            "content_encoding",
            "headers",
            "delivery_mode",
            "priority",
            "correlation_id",
            "reply_to",
            "expiration",
            "message_id",
            "timestamp",
            "type",
            "user_id",
            "app_id",
            "cluster_id",
        )
    }
    fields.update(changes)
    return pika.BasicProperties(**fields)


def dead_letter_properties(props: pika.BasicProperties, reason: str, check_name: str) -> pika.BasicProperties:
    """The properties of a message as it goes to the dead-letter exchange without being decoded."""
    headers = {k: v for k, v in (props.headers or {}).items() if k not in BROKER_HEADERS}
    headers.update({"x-ia-dead-letter-reason": reason, "x-ia-check-name": check_name})
    return replace_properties(props, headers=headers, delivery_mode=pika.DeliveryMode.Persistent)


def decode(props: pika.BasicProperties, body: bytes) -> Message:
    """The event a delivery carries. Raises ``InvalidMessage`` when it was not published by us."""
    h = props.headers or {}
    attempts = as_int(h.get("x-ia-attempts")) + as_int(h.get("x-delivery-count")) + 1
    try:
        received_at = datetime.fromisoformat(text(h.get("x-ia-received-at")))
        headers = json.loads(text(h.get("x-ia-headers"), "{}"))
    except ValueError as exc:
        raise InvalidMessage(f"message {props.message_id!r} lacks valid x-ia-* headers: {exc}") from exc
    return Message(
        id=text(props.message_id),
        source=text(h.get("x-ia-source")),  # type: ignore[arg-type]  # validated by Message
        event_type=text(props.type),
        body=body,
        headers=headers if isinstance(headers, dict) else {},
        received_at=received_at,
        attempts=attempts,
    )


def received_at(props: pika.BasicProperties) -> datetime | None:
    try:
        return datetime.fromisoformat(text((props.headers or {}).get("x-ia-received-at")))
    except ValueError:
        return None


def dead_letter_item(
    props: pika.BasicProperties, body: bytes, *, queue: str, delivery_limit: int
) -> QueueDeadLetter:
    """The dead letter of a message taken from the dead-letter queue, however it got there: sent by us
    (reason and check in ``x-ia-*`` headers) or by the broker (``x-death``: delivery limit, TTL, ...)."""
    h = props.headers or {}
    deaths = [d for d in (h.get("x-death") or []) if isinstance(d, dict)]
    source = text(h.get("x-ia-source"), "unknown")
    message_id = text(props.message_id) or f"amqp:{hashlib.sha256(body).hexdigest()[:32]}"
    try:
        headers = json.loads(text(h.get("x-ia-headers"), "{}"))
    except ValueError:
        headers = {}
    prior = as_int(h.get("x-ia-attempts"))
    reason = h.get("x-ia-dead-letter-reason")
    if reason is not None:
        check_name = text(h.get("x-ia-check-name"), "dead_letter")
        attempts = max(1, prior)
        reason_text = text(reason)
    else:
        why = text(h.get("x-first-death-reason") or (deaths[-1].get("reason") if deaths else None), "unknown")
        deliveries = delivery_limit + 1
        attempts = prior + deliveries if why == "delivery_limit" else max(1, prior)
        check_name = (
            why if why in ("delivery_limit", "rejected", "expired", "maxlen") else "broker_dead_letter"
        )
        if why == "delivery_limit":
            reason_text = (
                f"RabbitMQ dead-lettered the message after {deliveries} deliveries without ack "
                f"(x-delivery-limit={delivery_limit}); consumer crash loop?"
            )
        else:
            reason_text = _BROKER_REASONS.get(why, f"dead-lettered by the broker ({why})")
    details = {
        "backend": "rabbitmq",
        "queue": queue,
        "x_death": [
            {k: text(d.get(k)) for k in ("reason", "queue", "count", "exchange", "time") if k in d}
            for d in deaths
        ],
    }
    return QueueDeadLetter(
        source=source if SOURCE_RE.match(source) else "unknown",
        message_id=message_id,
        event_type=text(props.type, "unknown") or "unknown",
        body=body,
        headers=headers if isinstance(headers, dict) else {},
        received_at=received_at(props),
        reason=reason_text,
        check_name=check_name,
        attempts=attempts,
        details=details,
    )
