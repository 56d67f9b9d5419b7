"""Idempotency keys and content fingerprints of provider events (docs/PROVIDERS.md).

A queue key says *which* event a message is; the content fingerprint says *what* it carries. Two messages
with one key and one fingerprint are the same event delivered twice (a duplicate); one key with two
fingerprints is a key collision, which is never dropped silently: it is counted and dead-lettered with
check ``key_collision``.

- Stripe and EasyPost: the key is the provider's ``evt_…`` id, unique per event.
- HubSpot: ``eventId`` is not unique (HubSpot's own test deliveries all carry ``eventId`` 100, see
  docs/PROVIDERS.md), so the key is ``hubspot:<eventId>:<digest>``, a SHA-256 of the fields that identify
  one change: eventId, subscriptionId, portalId, objectTypeId, objectId, occurredAt, subscriptionType,
  propertyName and propertyValue (which enters the key only through the hash). A redelivery carries the
  same fields and gets the same key.

The fingerprint is a SHA-256 of the event's canonical JSON without the fields a provider changes from one
delivery attempt to the next (HubSpot ``attemptNumber``; Stripe ``pending_webhooks``; EasyPost ``status``,
``pending_urls``, ``completed_urls``, ``updated_at``), so a retry is recognised as the same content. The
receiver stores it in the message header ``x-content-sha256``; a message without it (published by an older
receiver, or by hand) is fingerprinted from its body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

CONTENT_HEADER = "x-content-sha256"
# Fields that change between delivery attempts of one event, per provider.
VOLATILE_FIELDS: dict[str, frozenset[str]] = {
    "hubspot": frozenset({"attemptNumber"}),
    "stripe": frozenset({"pending_webhooks"}),
    "easypost": frozenset({"status", "pending_urls", "completed_urls", "updated_at"}),
}
# What identifies one HubSpot change, besides propertyValue (hashed with them: any length, any type).
HUBSPOT_KEY_FIELDS = (
    "eventId",
    "subscriptionId",
    "portalId",
    "objectTypeId",
    "objectId",
    "occurredAt",
    "subscriptionType",
    "propertyName",
)
# Sorted keys: a provider that reorders an object's keys between attempts still sends the same content.
# ASCII escapes: a lone surrogate must not make the encoding fail.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _canonical(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("ascii")


def content_fingerprint(source: str, doc: Any) -> str:
    """SHA-256 (hex) of ``doc`` without the provider's per-attempt fields."""
    volatile = VOLATILE_FIELDS.get(source, frozenset())
    if isinstance(doc, Mapping) and volatile.intersection(doc):
        doc = {k: v for k, v in doc.items() if k not in volatile}
    return hashlib.sha256(_canonical(doc)).hexdigest()


def body_fingerprint(source: str, body: bytes) -> str:
    """The fingerprint of a message body; a body that is not JSON is fingerprinted as bytes."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return hashlib.sha256(body).hexdigest()
    return content_fingerprint(source, doc)


def message_fingerprint(source: str, body: bytes, headers: Mapping[str, str]) -> str:
    """The receiver's fingerprint when the message carries one, else computed from the body."""
    value = headers.get(CONTENT_HEADER)
    if isinstance(value, str) and len(value) == 64:
        return value
    return body_fingerprint(source, body)


def hubspot_event_key(event: Mapping[str, Any]) -> str:
    """``hubspot:<eventId>:<digest of the identifying fields>`` (the element must carry ``eventId``)."""
    # repr of a tuple of JSON values is unambiguous (strings quoted and escaped, 1 / 1.0 / True / "1" all
    # distinct) and costs one C call; propertyValue enters whole, so the digest also hashes the value.
    ident = repr(tuple(event.get(name) for name in (*HUBSPOT_KEY_FIELDS, "propertyValue")))
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"hubspot:{event.get('eventId')}:{digest}"


def collision_key(message_id: str, fingerprint: str) -> str:
    """The dead letter's key of a message whose key was taken by other content: its own row, so it neither
    overwrites nor is mistaken for the dead letter of the first message."""
    return f"{message_id[:200]}#collision-{fingerprint[:16]}"
