"""Content fingerprints of provider events, and the key of a key collision (docs/PROVIDERS.md).

A queue key says *which* event a message is (each provider declares how its key is made:
``integration_assets.providers``); the content fingerprint says *what* it carries. Two messages with one key
and one fingerprint are the same event delivered twice (a duplicate); one key with two fingerprints is a key
collision, which is never dropped silently: it is counted and dead-lettered with check ``key_collision``.

The fingerprint is a SHA-256 of the event's canonical JSON without the fields a provider changes from one
delivery attempt to the next (its ``volatile_fields``, which the caller passes: HubSpot ``attemptNumber``;
Stripe ``pending_webhooks``; EasyPost ``status``, ``pending_urls``, ``completed_urls``, ``updated_at``), so a
retry is recognised as the same content. The receiver stores it in the message header ``x-content-sha256``;
a message without it (published by an older receiver, or by hand) is fingerprinted from its body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

CONTENT_HEADER = "x-content-sha256"
# Sorted keys: a provider that reorders an object's keys between attempts still sends the same content.
# ASCII escapes: a lone surrogate must not make the encoding fail.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _canonical(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("ascii")


def content_fingerprint(doc: Any, volatile: frozenset[str] = frozenset()) -> str:
    """SHA-256 (hex) of ``doc`` without the provider's per-attempt fields ``volatile``."""
    if isinstance(doc, Mapping) and volatile.intersection(doc):
        doc = {k: v for k, v in doc.items() if k not in volatile}
    return hashlib.sha256(_canonical(doc)).hexdigest()


def body_fingerprint(body: bytes, volatile: frozenset[str] = frozenset()) -> str:
    """The fingerprint of a message body; a body that is not JSON is fingerprinted as bytes."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return hashlib.sha256(body).hexdigest()
    return content_fingerprint(doc, volatile)


def message_fingerprint(
    body: bytes, headers: Mapping[str, str], volatile: frozenset[str] = frozenset()
) -> str:
    """The receiver's fingerprint when the message carries one, else computed from the body."""
    value = headers.get(CONTENT_HEADER)
    if isinstance(value, str) and len(value) == 64:
        return value
    return body_fingerprint(body, volatile)


def collision_key(message_id: str, fingerprint: str) -> str:
    """The dead letter's key of a message whose key was taken by other content: its own row, so it neither
    overwrites nor is mistaken for the dead letter of the first message."""
    return f"{message_id[:200]}#collision-{fingerprint[:16]}"
