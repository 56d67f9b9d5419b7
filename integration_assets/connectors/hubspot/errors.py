"""HubSpot's error and rate-limit semantics (docs/SOURCES.md §1.4), on top of the default HTTP classification.

Rate limits (§1.4): a 429 whose body says ``policyName: TEN_SECONDLY_ROLLING`` waits the rolling window
(``X-HubSpot-RateLimit-Interval-Milliseconds``, 10 s) or Retry-After if longer; the search "secondly limit"
waits 1 s (as HubSpot's own Node client does); ``DAILY`` is not retried: :class:`HubSpotDailyLimit`
(terminal) until the limit resets at midnight in the account's time zone, and the client refuses any further
call in that run.
"""

from __future__ import annotations

from typing import Any

import httpx

from integration_assets.connectors._retry import (
    RETRY_STATUSES,
    QuotaExhausted,
    RequestRejected,
    Verdict,
    classify_http,
    parse_retry_after,
)

# TEN_SECONDLY_ROLLING: X-HubSpot-RateLimit-Interval-Milliseconds = 10000 (docs/SOURCES.md §1.4).
TEN_SECONDLY_WINDOW = 10.0
SECONDLY_WINDOW = 1.0  # "You have reached your secondly limit." (search); hs-node waits 1 s


class HubSpotDailyLimit(QuotaExhausted):
    """429 with ``policyName: DAILY``: the account's daily call limit is spent. Terminal until it resets."""


class HubSpotAuthError(RequestRejected):
    """401/403: the token is wrong, expired or lacks a scope."""


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response body when it is a JSON object, else {} (HubSpot error bodies are objects)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _interval_seconds(response: httpx.Response) -> float | None:
    raw = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    return int(raw) / 1000 if raw and raw.isdigit() and int(raw) > 0 else None


def classify_hubspot(response: httpx.Response, now: float) -> Verdict:
    """HubSpot's error semantics on top of the default (429 policies, 401/403, the error body's message)."""
    status = response.status_code
    if status == 429:
        body = json_body(response)
        policy = str(body.get("policyName") or "")
        message = str(body.get("message") or "")
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        if policy == "DAILY":
            remaining = response.headers.get("X-HubSpot-RateLimit-Daily-Remaining")
            return Verdict(
                "terminal",
                block=True,
                error=HubSpotDailyLimit(
                    f"HubSpot daily API limit reached (429, policyName DAILY: {message!r}"
                    f"{f', daily remaining {remaining}' if remaining is not None else ''}); not retried: it resets at "
                    f"midnight in the account's time zone. Correlation id {body.get('correlationId')}.",
                    status=429,
                    code="DAILY",
                ),
            )
        if policy == "TEN_SECONDLY_ROLLING":
            window = _interval_seconds(response) or TEN_SECONDLY_WINDOW
            return Verdict("retry", reason=f"429 {policy}", retry_after=retry_after, min_wait=window)
        if "secondly" in message.lower():
            return Verdict(
                "retry", reason="429 secondly limit", retry_after=retry_after, min_wait=SECONDLY_WINDOW
            )
        return Verdict("retry", reason=f"429 {policy or 'rate limited'}", retry_after=retry_after)
    if 400 <= status < 500 and status not in RETRY_STATUSES:
        body = json_body(response)
        category = str(body.get("category") or "")
        detail = f"HTTP {status} {category}: {str(body.get('message') or '')[:300]}".strip()
        if status in (401, 403):
            return Verdict(
                "terminal",
                error=HubSpotAuthError(
                    f"HubSpot refused the request ({detail}); check HUBSPOT_ACCESS_TOKEN and the private app's scopes "
                    f"(crm.objects.contacts.read, crm.objects.companies.read, crm.objects.deals.read)",
                    status=status,
                    code=category or None,
                ),
            )
        return Verdict("terminal", reason=detail)
    return classify_http(response, now)
