"""EasyPost: one Event object per delivery, keyed by its ``evt_…`` id, typed by its ``description``, signed
with ``X-Hmac-Signature`` (docs/SOURCES.md §4.3, docs/PROVIDERS.md). Routing is by the family of the
description (``tracker.updated`` → the ``tracker`` event contract)."""

from __future__ import annotations

import hmac
import time
import unicodedata
from collections.abc import Mapping
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
    event_type,
    hmac_sha256,
    text,
)

_PREFIX = "hmac-sha256-hex="


def _key(secret: str) -> bytes:
    # EasyPost's client libraries NFKD-normalise the webhook secret before using it as the HMAC key.
    return unicodedata.normalize("NFKD", secret).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """``X-Hmac-Signature``: ``hmac-sha256-hex=`` + hex(HMAC-SHA256(NFKD(secret), raw body))."""
    return _PREFIX + hmac_sha256(_key(secret), body).hex()


def verify(body: bytes, header: str | None, secret: str | None) -> None:
    """Check ``X-Hmac-Signature``. EasyPost signs no timestamp, so there is no replay window: replays are
    absorbed downstream by the event-id ledger (at-least-once delivery is documented)."""
    if not header:
        raise MissingSignature("X-Hmac-Signature header missing")
    value = header.strip()
    if not value.lower().startswith(_PREFIX) or len(value) > 256:
        raise MalformedSignature("X-Hmac-Signature is not hmac-sha256-hex=<hex>")
    if not secret:
        raise InvalidSignature("no EasyPost webhook secret configured")
    expected = hmac_sha256(_key(secret), body).hex().encode("ascii")
    provided = value[len(_PREFIX) :].lower().encode("ascii", errors="replace")
    if not hmac.compare_digest(expected, provided):
        raise InvalidSignature("X-Hmac-Signature does not match the payload")


class EasyPost(Provider):
    name = "easypost"
    secret_vars = ("EASYPOST_WEBHOOK_SECRET",)
    signature_headers = ("x-hmac-signature",)
    volatile_fields = frozenset({"status", "pending_urls", "completed_urls", "updated_at"})

    def verify(
        self,
        request: SignedRequest,
        secrets: tuple[str, ...],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Clock = time.time,
    ) -> dict[str, str]:
        verify(request.body, request.headers.get("x-hmac-signature"), secrets[0] if secrets else None)
        return {}

    def events(self, doc: Any, body: bytes) -> list[Event]:
        """An EasyPost delivery is one Event object; the key is its ``evt_…`` id, the type its description."""
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not EVENT_ID.match(doc["id"]):
            raise PayloadError("not an EasyPost event (id evt_…)")
        return [Event(f"easypost:{doc['id']}", event_type(doc.get("description"), "description"), body, doc)]

    def destination(self, doc: Mapping[str, Any], event_type: str) -> Destination:
        description = text(doc.get("description")) or event_type
        return Destination("contract", description.split(".", 1)[0])
