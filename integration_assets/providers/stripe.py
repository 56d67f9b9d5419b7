"""Stripe: one Event object per delivery, keyed by its ``evt_…`` id, signed with ``Stripe-Signature``
(docs/SOURCES.md §3.5, docs/PROVIDERS.md).

Routing is by ``data.object.object`` (payment_intent, charge, refund), so every event that carries a snapshot
of such an object updates it, whatever its type (``payment_intent.succeeded``; ``charge.refund.updated``
carries a refund); the contract is ``contracts/stripe/<object>_event.vN.yaml`` (delivery ``event``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from integration_assets.providers.base import (
    DEFAULT_TOLERANCE_S,
    EVENT_ID,
    Clock,
    Destination,
    Event,
    InvalidSignature,
    MalformedSignature,
    MissingSignature,
    PayloadError,
    Provider,
    SignedRequest,
    Unroutable,
    check_window,
    event_type,
    hmac_sha256,
    text,
)
from integration_assets.settings import Settings

# A Stripe-Signature header carries a handful of values; anything longer is not from Stripe.
_MAX_HEADER_CHARS = 4096
_MAX_V1_VALUES = 16


def parse_secrets(value: str | None) -> tuple[str, ...]:
    """``STRIPE_WEBHOOK_SECRET`` may hold several ``whsec_…`` secrets, comma-separated, while rotating."""
    return tuple(s.strip() for s in (value or "").split(",") if s.strip())


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` at ``timestamp``."""
    digest = hmac_sha256(secret.encode("utf-8"), str(timestamp).encode("ascii"), b".", payload)
    return f"t={timestamp},v1={digest.hex()}"


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    clock: Clock = time.time,
) -> int:
    """Check a ``Stripe-Signature`` header: ``t=<unix>,v1=<hex>[,v1=…]``; any v1 matching
    HMAC-SHA256(secret, f"{t}.{raw body}") under any active secret passes (``v0`` is ignored). Returns t."""
    if not header:
        raise MissingSignature("Stripe-Signature header missing")
    if len(header) > _MAX_HEADER_CHARS:
        raise MalformedSignature("Stripe-Signature header too long")
    timestamp: int | None = None
    candidates: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                raise MalformedSignature("Stripe-Signature t is not a unix timestamp")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().lower().encode("ascii", errors="replace"))
    if timestamp is None or not candidates:
        raise MalformedSignature("Stripe-Signature lacks t or v1")
    if len(candidates) > _MAX_V1_VALUES:
        raise MalformedSignature("Stripe-Signature has too many v1 values")
    if not secrets:
        raise InvalidSignature("no Stripe webhook secret configured")
    signed = str(timestamp).encode("ascii")
    matched = False
    for secret in secrets:
        expected = hmac_sha256(secret.encode("utf-8"), signed, b".", payload).hex().encode("ascii")
        for candidate in candidates:
            # No early exit: the time taken must not depend on which secret or value matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("no Stripe-Signature v1 value matches the payload")
    # After the signature, like stripe-python: an attacker cannot learn anything from the window check.
    check_window(timestamp, clock(), tolerance_s)
    return timestamp


class Stripe(Provider):
    name = "stripe"
    secret_vars = ("STRIPE_WEBHOOK_SECRET",)
    signature_headers = ("stripe-signature",)
    volatile_fields = frozenset({"pending_webhooks"})

    def secrets(self, settings: Settings) -> tuple[str, ...]:
        return parse_secrets(settings.stripe_webhook_secret)

    def verify(
        self,
        request: SignedRequest,
        secrets: tuple[str, ...],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Clock = time.time,
    ) -> dict[str, str]:
        t = verify(
            request.body,
            request.headers.get("stripe-signature"),
            secrets,
            tolerance_s=tolerance_s,
            clock=clock,
        )
        return {"x-stripe-signature-timestamp": str(t)}

    def events(self, doc: Any, body: bytes) -> list[Event]:
        """A Stripe delivery is one Event object; the key is its ``evt_…`` id."""
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not EVENT_ID.match(doc["id"]):
            raise PayloadError("not a Stripe event (id evt_…)")
        return [Event(f"stripe:{doc['id']}", event_type(doc.get("type"), "type"), body, doc)]

    def destination(self, doc: Mapping[str, Any], event_type: str) -> Destination:
        data = doc.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        family = text(obj.get("object")) if isinstance(obj, dict) else None
        if family is None:
            raise Unroutable("invalid_payload", "Stripe event without data.object.object")
        return Destination("contract", family)
