"""HubSpot's error and rate-limit semantics (docs/SOURCES.md §1.4), on top of the default HTTP classification.

Rate limits (§1.4): a 429 whose body says ``policyName: TEN_SECONDLY_ROLLING`` waits the rolling window
(``X-HubSpot-RateLimit-Interval-Milliseconds``, 10 s) or Retry-After if longer; the search "secondly limit"
waits 1 s (as HubSpot's own Node client does); ``DAILY`` is not retried: :class:`HubSpotDailyLimit`
(terminal) until the limit resets at midnight in the account's time zone, and the client refuses any further
call in that run.

Writes (docs/SOURCES.md §1.4, §1.7): a 400 ``VALIDATION_ERROR`` (an unknown, read-only or newly required
property, a value outside an enumeration's options) is :class:`HubSpotRejected`, permanent, naming the
property from ``errors[].context.propertyName`` or, in older bodies, from the JSON list inside ``message``.
"""

from __future__ import annotations

import json
import re
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


class HubSpotRejected(RequestRejected):
    """400 VALIDATION_ERROR on a write: HubSpot refused a property value; retrying the same write fails the same
    way. ``field`` is the (first) property named, ``code`` HubSpot's error code (``PROPERTY_DOESNT_EXIST``,
    ``INVALID_OPTION``, ``READ_ONLY_VALUE``, …), ``problems`` every (property, code, message) of the body."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None,
        status: int | None = 400,
        code: str | None = None,
        problems: tuple[tuple[str | None, str | None, str], ...] = (),
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.field = field
        self.problems = problems


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
                    f"(crm.objects.contacts.read, crm.objects.companies.read, crm.objects.deals.read; the outbound "
                    f"write-back also crm.objects.deals.write and crm.objects.line_items.read)",
                    status=status,
                    code=category or None,
                ),
            )
        return Verdict("terminal", reason=detail)
    return classify_http(response, now)


_PROPERTY_IN_TEXT = re.compile(r'[Pp]roperty \\?"([^"\\]+)\\?"')


def _embedded_results(message: str) -> list[dict[str, Any]]:
    """The ``[{"isValid":false,"message",…,"error":CODE,"name":PROPERTY}]`` list inside a
    ``Property values were not valid: […]`` message (the body's only details in older answers)."""
    start = message.find("[")
    if start < 0:
        return []
    try:
        data = json.loads(message[start:])
    except ValueError:
        return []
    return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []


def validation_problems(body: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    """(property, code, message) of each problem a VALIDATION_ERROR body names, most specific source first."""
    out: list[tuple[str | None, str | None, str]] = []
    for err in body.get("errors") or []:
        if not isinstance(err, dict):
            continue
        names = (err.get("context") or {}).get("propertyName") or []
        name = str(names[0]) if isinstance(names, list) and names else None
        text = str(err.get("message") or "")
        if name is None and (m := _PROPERTY_IN_TEXT.search(text)):
            name = m.group(1)
        out.append((name, str(err.get("code")) if err.get("code") else None, text))
    if not out:
        for item in _embedded_results(str(body.get("message") or "")):
            name = item.get("name")
            out.append(
                (
                    str(name) if name else None,
                    str(item.get("error")) if item.get("error") else None,
                    str(item.get("message") or ""),
                )
            )
    return out


def classify_hubspot_write(response: httpx.Response, now: float) -> Verdict:
    """:func:`classify_hubspot`, plus a 400 VALIDATION_ERROR as :class:`HubSpotRejected` naming the property."""
    if response.status_code == 400:
        body = json_body(response)
        if str(body.get("category") or "") == "VALIDATION_ERROR":
            problems = validation_problems(body)
            field = next((name for name, _, _ in problems if name), None)
            code = next((c for _, c, _ in problems if c), None)
            detail = (
                "; ".join(
                    f"{name or '?'}: {code or 'invalid'}: {text[:200]}" for name, code, text in problems
                )
                or str(body.get("message") or "")[:300]
            )
            return Verdict(
                "terminal",
                error=HubSpotRejected(
                    f"HubSpot rejected the write (400 VALIDATION_ERROR): {detail}. "
                    f"Correlation id {body.get('correlationId')}.",
                    field=field,
                    code=code,
                    problems=tuple(problems),
                ),
            )
    return classify_hubspot(response, now)
