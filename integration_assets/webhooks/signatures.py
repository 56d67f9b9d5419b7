"""Webhook signature checks, exactly as each provider specifies them (../shared/SOURCES.md 1.5, 3.5, 4.3).

All checks run on the raw request bytes, before anything is parsed, and compare with
``hmac.compare_digest``. The ``sign_*`` functions produce what the provider would send; the tests, the
demo and the benchmark's load generator use them.

Every failure is a ``SignatureError`` carrying the HTTP status and a short reason label (used as the
``reason`` of the rejected-requests metric); the message never contains a secret or a signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import ClassVar

from integration_assets.errors import TerminalError

# Stripe's DEFAULT_TOLERANCE (stripe-python ``_webhook.py``) and HubSpot's MAX_ALLOWED_TIMESTAMP
# (hubspot-api-python ``utils/signature.py``) are both 300 s. Stripe's library rejects only old
# timestamps; like Svix we also reject ones more than 300 s in the future (RELIABILITY.md).
DEFAULT_TOLERANCE_S = 300
# A Stripe-Signature header carries a handful of values; anything longer is not from Stripe.
_MAX_HEADER_CHARS = 4096
_MAX_V1_VALUES = 16

Clock = Callable[[], float]


class SignatureError(TerminalError):
    """The request is not an authentic, fresh delivery from the provider; it must not be enqueued."""

    status: ClassVar[int] = 401
    reason: ClassVar[str] = "bad_signature"


class MissingSignature(SignatureError):
    status = 400
    reason = "missing_signature"


class MalformedSignature(SignatureError):
    status = 400
    reason = "malformed_signature"


class InvalidSignature(SignatureError):
    status = 401
    reason = "bad_signature"


class StaleTimestamp(SignatureError):
    status = 400
    reason = "stale_timestamp"


class FutureTimestamp(SignatureError):
    status = 400
    reason = "future_timestamp"


def _check_window(timestamp_s: float, now_s: float, tolerance_s: float) -> None:
    if timestamp_s < now_s - tolerance_s:
        raise StaleTimestamp(f"timestamp is {now_s - timestamp_s:.0f}s old (tolerance {tolerance_s}s)")
    if timestamp_s > now_s + tolerance_s:
        raise FutureTimestamp(
            f"timestamp is {timestamp_s - now_s:.0f}s in the future (tolerance {tolerance_s}s)"
        )


def _hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


# ------------------------------------------------------------------------------------------ Stripe
def parse_stripe_secrets(value: str | None) -> tuple[str, ...]:
    """``STRIPE_WEBHOOK_SECRET`` may hold several ``whsec_…`` secrets, comma-separated, while rotating."""
    return tuple(s.strip() for s in (value or "").split(",") if s.strip())


def sign_stripe(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload`` at ``timestamp``."""
    digest = _hmac_sha256(secret.encode("utf-8"), str(timestamp).encode("ascii"), b".", payload)
    return f"t={timestamp},v1={digest.hex()}"


def verify_stripe(
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
        expected = _hmac_sha256(secret.encode("utf-8"), signed, b".", payload).hex().encode("ascii")
        for candidate in candidates:
            # No early exit: the time taken must not depend on which secret or value matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature("no Stripe-Signature v1 value matches the payload")
    # After the signature, like stripe-python: an attacker cannot learn anything from the window check.
    _check_window(timestamp, clock(), tolerance_s)
    return timestamp


# ----------------------------------------------------------------------------------------- HubSpot
def sign_hubspot_v3(method: str, uri: str, body: bytes, timestamp_ms: int, client_secret: str) -> str:
    """``X-HubSpot-Signature-v3``: base64(HMAC-SHA256(client secret, method + URI + body + timestamp))."""
    digest = _hmac_sha256(
        client_secret.encode("utf-8"),
        method.upper().encode("ascii"),
        uri.encode("utf-8"),
        body,
        str(timestamp_ms).encode("ascii"),
    )
    return base64.b64encode(digest).decode("ascii")


def verify_hubspot_v3(
    *,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    client_secret: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    clock: Clock = time.time,
) -> int:
    """Check ``X-HubSpot-Signature-v3`` against ``X-HubSpot-Request-Timestamp`` (epoch milliseconds).

    ``uri`` is the full URL HubSpot posted to (scheme, host, path, query), as configured in the app's
    webhook settings. Returns the timestamp in ms."""
    if not signature:
        raise MissingSignature("X-HubSpot-Signature-v3 header missing")
    if not timestamp:
        raise MissingSignature("X-HubSpot-Request-Timestamp header missing")
    if not timestamp.isdigit() or len(timestamp) > 15:
        raise MalformedSignature("X-HubSpot-Request-Timestamp is not epoch milliseconds")
    if len(signature) > 256:
        raise MalformedSignature("X-HubSpot-Signature-v3 too long")
    if not client_secret:
        raise InvalidSignature("no HubSpot client secret configured")
    expected = sign_hubspot_v3(method, uri, body, int(timestamp), client_secret)
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("ascii", errors="replace")):
        raise InvalidSignature("X-HubSpot-Signature-v3 does not match the request")
    _check_window(int(timestamp) / 1000, clock(), tolerance_s)
    return int(timestamp)


# ---------------------------------------------------------------------------------------- EasyPost
_EASYPOST_PREFIX = "hmac-sha256-hex="


def _easypost_key(secret: str) -> bytes:
    # EasyPost's client libraries NFKD-normalise the webhook secret before using it as the HMAC key.
    return unicodedata.normalize("NFKD", secret).encode("utf-8")


def sign_easypost(body: bytes, secret: str) -> str:
    """``X-Hmac-Signature``: ``hmac-sha256-hex=`` + hex(HMAC-SHA256(NFKD(secret), raw body))."""
    return _EASYPOST_PREFIX + _hmac_sha256(_easypost_key(secret), body).hex()


def verify_easypost(body: bytes, header: str | None, secret: str | None) -> None:
    """Check ``X-Hmac-Signature``. EasyPost signs no timestamp, so there is no replay window: replays are
    absorbed downstream by the event-id ledger (at-least-once delivery is documented)."""
    if not header:
        raise MissingSignature("X-Hmac-Signature header missing")
    value = header.strip()
    if not value.lower().startswith(_EASYPOST_PREFIX) or len(value) > 256:
        raise MalformedSignature("X-Hmac-Signature is not hmac-sha256-hex=<hex>")
    if not secret:
        raise InvalidSignature("no EasyPost webhook secret configured")
    expected = _hmac_sha256(_easypost_key(secret), body).hex().encode("ascii")
    provided = value[len(_EASYPOST_PREFIX) :].lower().encode("ascii", errors="replace")
    if not hmac.compare_digest(expected, provided):
        raise InvalidSignature("X-Hmac-Signature does not match the payload")
