"""EasyPost's error semantics (docs/SOURCES.md §4.4, §4.6) on top of the default HTTP classification.

Every 4xx carries the envelope ``{"error": {"code", "message", "errors": [FieldError | str]}}``. The API client
turns it into :class:`EasyPostRejected` (terminal) with EasyPost's ``code`` and the ``field`` named, so a dead
letter says what to fix. 429 (honouring ``Retry-After``), 408 and 5xx are transient and retried by the shared
HTTP layer. A shipment without rates is :class:`NoRates` (terminal: the same parcel and address will not rate
better on a retry).
"""

from __future__ import annotations

from typing import Any

import httpx

from integration_assets.connectors._retry import RETRY_STATUSES, RequestRejected, Verdict, classify_http

# Codes the client acts on (docs/SOURCES.md §4.6).
POSTAGE_EXISTS = "SHIPMENT.POSTAGE.EXISTS"  # buying a shipment that already has a label
ADDRESS_VERIFY_FAILURE = "ADDRESS.VERIFY.FAILURE"
NOT_FOUND = "NOT_FOUND"
NO_RATES = "SHIPMENT.RATES.UNAVAILABLE"


class EasyPostRejected(RequestRejected):
    """EasyPost refused the request for a reason retrying will not fix (a 4xx other than 408/429).

    ``code`` is EasyPost's machine-readable code (``ADDRESS.VERIFY.FAILURE``), ``field`` the request field
    its errors name (the most specific one), ``errors`` the field errors as ``(field, message)`` pairs.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        errors: tuple[tuple[str | None, str], ...] = (),
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.field = field
        self.errors = errors


class EasyPostAuthError(EasyPostRejected):
    """401/403: the API key is missing, wrong or inactive."""


class NoRates(EasyPostRejected):
    """The shipment has no rate to buy (no carrier rated it, or none matches the rate policy).

    ``shipment_id`` is the shipment that was created without rates (None when none was), ``messages`` the
    carriers' rating messages as ``(carrier, message)`` pairs.
    """

    def __init__(
        self,
        message: str,
        *,
        shipment_id: str | None = None,
        messages: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message, code=NO_RATES, field="rates")
        self.shipment_id = shipment_id
        self.messages = messages


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response body when it is a JSON object, else {}."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _field_errors(raw: Any) -> tuple[tuple[str | None, str], ...]:
    """``errors`` as (field, message) pairs: FieldError objects or plain strings (docs/SOURCES.md §4.4).

    ``suggestion`` is left out on purpose: for an address it may quote the customer's address back.
    """
    out: list[tuple[str | None, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            field = item.get("field")
            out.append(
                (str(field) if field else None, " ".join(str(item.get("message") or "").split())[:200])
            )
        elif item is not None:
            out.append((None, " ".join(str(item).split())[:200]))
    return tuple(out)


def _main_field(errors: tuple[tuple[str | None, str], ...]) -> str | None:
    """The field to name: the first specific one (``street1``) before the catch-all ``address``."""
    fields = [f for f, _ in errors if f]
    specific = [f for f in fields if f != "address"]
    return (specific or fields)[0] if fields else None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


def rejected_from(response: httpx.Response, secrets: tuple[str, ...] = ()) -> EasyPostRejected:
    """The terminal error for a 4xx answer, from EasyPost's error envelope (``secrets`` masked in the text)."""
    status = response.status_code
    error = json_body(response).get("error")
    envelope: dict[str, Any] = error if isinstance(error, dict) else {}
    code = str(envelope.get("code") or "") or None
    message = " ".join(str(envelope.get("message") or "").split())[:300]
    errors = _field_errors(envelope.get("errors"))
    field = _main_field(errors)
    detail = "; ".join(f"{f}: {m}" if f else m for f, m in errors[:5])
    text = f"EasyPost rejected the request (HTTP {status} {code or 'no code'}): {message or 'no message'}"
    if detail:
        text += f" [{detail}]"
    cls = EasyPostAuthError if status in (401, 403) else EasyPostRejected
    if cls is EasyPostAuthError:
        text += "; check EASYPOST_API_KEY (a test key EZTK… or a production key EZAK…)"
    errors = tuple((f, _scrub(m, secrets)) for f, m in errors)
    return cls(_scrub(text, secrets), status=status, code=code, field=field, errors=errors)


def classify_easypost(response: httpx.Response, now: float, *, secrets: tuple[str, ...] = ()) -> Verdict:
    """2xx ok; 408/425/429/5xx retried (Retry-After honoured); any other 4xx terminal with EasyPost's code.

    ``secrets`` (the API key) are masked in the error: an error message may echo what was sent.
    """
    status = response.status_code
    if 400 <= status < 500 and status not in RETRY_STATUSES:
        return Verdict("terminal", error=rejected_from(response, secrets))
    return classify_http(response, now)
