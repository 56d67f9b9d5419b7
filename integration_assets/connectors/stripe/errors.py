"""Stripe's error semantics (docs/SOURCES.md §3.4 and "Stripe API (pull)") on top of the default HTTP
classification.

Every error answer carries the envelope ``{"error": {"type", "code", "message", "param", …}}``. Transient and
retried by the shared HTTP seam: 429 (any body: Stripe's rate limits and ``lock_timeout``), 5xx, 408, and any
answer with ``Stripe-Should-Retry: true``. ``Stripe-Should-Retry: false`` is never retried (what Stripe's own
libraries do). 401/403 are :class:`StripeAuthError` (permanent: the key is wrong, revoked or lacks a
permission); any other 4xx :class:`StripeRejected` with Stripe's ``type`` and ``code``.
"""

from __future__ import annotations

from typing import Any

import httpx

from integration_assets.connectors._retry import (
    RequestRejected,
    Verdict,
    classify_http,
    parse_retry_after,
)


class StripeRejected(RequestRejected):
    """Stripe refused the request for a reason retrying will not fix. ``type`` is Stripe's error type
    (``invalid_request_error`` …), ``code`` its code when it sent one (``resource_missing`` …)."""

    def __init__(
        self, message: str, *, status: int | None = None, type_: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.type = type_


class StripeAuthError(StripeRejected):
    """401/403: the API key is missing, wrong, revoked, or a restricted key without read access."""


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response body when it is a JSON object, else {}."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def rejected_from(response: httpx.Response, secrets: tuple[str, ...] = ()) -> StripeRejected:
    """The permanent error for a 4xx answer, from Stripe's error envelope (``secrets`` masked)."""
    status = response.status_code
    error = json_body(response).get("error")
    envelope: dict[str, Any] = error if isinstance(error, dict) else {}
    type_ = str(envelope.get("type") or "") or None
    code = str(envelope.get("code") or "") or None
    message = " ".join(str(envelope.get("message") or "").split())[:300]
    text = (
        f"Stripe rejected the request (HTTP {status} {type_ or 'no type'}/{code or 'no code'}): "
        f"{message or 'no message'}"
    )
    cls = StripeAuthError if status in (401, 403) else StripeRejected
    if cls is StripeAuthError:
        text += "; check STRIPE_API_KEY (sk_… or a restricted rk_… key with read access to events)"
    return cls(_scrub(text, secrets), status=status, type_=type_, code=code)


def classify_stripe(response: httpx.Response, now: float, *, secrets: tuple[str, ...] = ()) -> Verdict:
    """2xx ok; ``Stripe-Should-Retry`` decides when present; else 408/425/429/5xx retried (``Retry-After``
    honoured when sent) and any other 4xx permanent with Stripe's type and code."""
    status = response.status_code
    if status < 400:
        return Verdict.ok()
    should_retry = (response.headers.get("Stripe-Should-Retry") or "").strip().lower()
    if should_retry == "true":
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return Verdict("retry", reason=f"HTTP {status} (Stripe-Should-Retry: true)", retry_after=retry_after)
    if should_retry == "false" or (400 <= status < 500 and status not in (408, 425, 429)):
        return Verdict("terminal", error=rejected_from(response, secrets))
    return classify_http(response, now)
