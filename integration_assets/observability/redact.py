"""Scrub secrets and raw PII out of anything that leaves the process (alerts, logs).

OWASP Logging Cheat Sheet, "Data to exclude": access tokens, passwords, connection strings, card data and
sensitive personal data must be removed or masked, and CR/LF stripped so a value cannot forge a log line
or an e-mail header. Alert details are built from payloads, exception texts and check metadata, so every
outgoing alert and every log record passes through :func:`redact` (dicts, lists) or :func:`redact_text`.

Redaction is by pattern (the value looks like an e-mail, a card number, a token ...) and by key (a dict
entry called ``password``, ``customer_email``, ``last_name``, ``street`` or ``notes`` is masked whatever it
contains). Ids and business keys are not personal data: under an id key (``id``, ``deal_id``,
``natural_key`` ...) a value shaped like an id is kept as it is. It is deterministic and
idempotent: redacting twice gives the same text, so the alert key of an incident stays stable.

Known limits (documented, not hidden): national phone formats without a ``+`` or NANP shape, bare 9-digit
SSNs and names in free text are not detected; keep raw field values out of alert texts in the first place.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "luhn_valid", "redact", "redact_text"]

MASK = "[REDACTED]"

# A log line or an e-mail header must stay one line: CR, LF, NEL, the Unicode line/paragraph separators,
# and other C0 controls (NUL also breaks Postgres text columns) become a single space.
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\t]")

# scheme://user:password@host -> scheme://[REDACTED]@host (connection strings, webhook URLs).
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/?#@]+@")
# A Slack incoming-webhook URL is itself the credential.
_SLACK_WEBHOOK = re.compile(r"(https?://hooks\.slack(?:-gov)?\.com/)[^\s\"'<>]+")
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Stripe API keys (secret, restricted, publishable) and webhook signing secrets.
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{6,}"), "[REDACTED:stripe_key]"),
    (re.compile(r"\bwhsec_[0-9A-Za-z+/=]{6,}"), "[REDACTED:webhook_secret]"),
    # Slack tokens, GitHub tokens, AWS access key ids, JSON Web Tokens.
    (re.compile(r"\bxox[abposre]-[0-9A-Za-z-]{10,}"), "[REDACTED:slack_token]"),
    (re.compile(r"\bgh[pousr]_[0-9A-Za-z]{20,}"), "[REDACTED:github_token]"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "[REDACTED:aws_key]"),
    (re.compile(r"\beyJ[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]{4,}\.[0-9A-Za-z_-]*"), "[REDACTED:jwt]"),
)
# "Authorization: Bearer abc", "Basic dXNlcjpwYXNz".
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic|Token|Digest)\s+[0-9A-Za-z._~+/=-]{6,}", re.IGNORECASE)
# password=..., "api_key": "...", ?access_token=... in free text, query strings and JSON-ish dumps.
_SECRET_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b(?:password|passwd|pwd|secret|client_secret|api[_-]?key|apikey|access[_-]?token|refresh[_-]?token
        |auth[_-]?token|token|signature|sig|private[_-]?key|x-api-key|authorization)
     ["']?\s*[:=]\s*["']?)
    (?!\[REDACTED)[^\s"'&,;}]+
    """
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# PAN candidates: 13-19 contiguous digits, or the printed groupings 4-4-4-4(-3) and Amex 4-6-5.
_PAN = re.compile(
    r"(?<![0-9])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{5})(?![0-9])"
)
# Issuer prefixes of the major networks (Visa 4, Mastercard 51-55/2221-2720, Amex 34/37, Diners 30/36/38,
# JCB 35, Discover/UnionPay 6): keeps millisecond timestamps and long ids from being masked as cards.
_PAN_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[0478]|35|36|6)")
# US SSN AAA-GG-SSSS with the never-issued areas (000, 666, 9xx), group 00 and serial 0000 excluded.
_SSN = re.compile(r"(?<![0-9])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![0-9])")
# Phone numbers: E.164-ish "+<country> ..." (8-15 digits), and the NANP shapes (415) 555-0100 / 415-555-0100.
_PHONE = re.compile(
    r"(?<![\w+])\+\d(?:[ .()-]{0,2}\d){7,14}(?!\d)"
    r"|(?<![\w])(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4}(?!\d)"
)

# Dict keys whose values are secrets whatever they look like.
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_key|apikey"
    r"|authorization|auth|cookie|set_cookie|signature|credentials?|private_key|session|session_id"
    r"|ssn|social_security_number|cvv|cvc|pan|card_number|iban)(?:_|$)"
)
# Dict keys whose values are personal data (exact names, or a prefix like customer_email).
_PII_KEY = re.compile(
    r"^(?:.+_)?(?:email|e_mail|phone|phone_number|mobile|mobilephone|fax|first_name|last_name|full_name"
    r"|firstname|lastname|contact_name|customer_name|recipient_name|street|street1|street2|street3|address"
    r"|address_line_?\d|city|zip|zip_code|postal_code|postcode|note|notes|comment|comments"
    r"|date_of_birth|dob|birthdate|birth_date)$"
)
# Dict keys whose values are ids or business keys: not personal data, kept as they are when they look like
# one (digits, or a prefixed id such as pi_3Nx...), so a 16-digit record id is never masked as a card number.
_ID_KEY = re.compile(r"^(?:id|ids|natural_key|business_key|.+_id|.+_ids|.+_key)$")
_ID_VALUE = re.compile(r"^[A-Za-z]{0,8}_?[0-9A-Za-z]{1,64}$")

MAX_DEPTH = 20


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn (mod 10) check used by payment card numbers."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_pan(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and bool(_PAN_PREFIX.match(digits)) and luhn_valid(digits)


def _mask_pan(match: re.Match[str]) -> str:
    return "[REDACTED:pan]" if _is_pan(match.group(0)) else match.group(0)


def redact_text(text: str) -> str:
    """``text`` on one line with secrets, card numbers, SSNs, e-mails and phone numbers masked."""
    if not text:
        return text
    out = _LINE_BREAKS.sub(" ", text)
    out = _CONTROLS.sub(" ", out)
    out = _SLACK_WEBHOOK.sub(r"\1[REDACTED]", out)
    out = _URL_CREDENTIALS.sub(r"\1[REDACTED]@", out)
    for pattern, replacement in _SECRET_PATTERNS:
        out = pattern.sub(replacement, out)
    out = _AUTH_SCHEME.sub(r"\1 [REDACTED]", out)
    out = _SECRET_ASSIGNMENT.sub(r"\1[REDACTED]", out)
    out = _EMAIL.sub("[REDACTED:email]", out)
    out = _PAN.sub(_mask_pan, out)
    out = _SSN.sub("[REDACTED:ssn]", out)
    out = _PHONE.sub("[REDACTED:phone]", out)
    return out


def _key_class(key: str) -> str | None:
    norm = re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")
    if _SECRET_KEY.search(norm):
        return "secret"
    if _PII_KEY.match(norm):
        return "pii"
    if _ID_KEY.match(norm):
        return "id"
    return None


def _keep_id(value: Any) -> bool:
    """An id under an id key: an integer, or a short token of letters, digits and one underscore."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and bool(_ID_VALUE.match(value))


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with every string redacted and sensitive dict entries masked.

    Dicts, lists, tuples and sets are walked (keys too); ``datetime``/``date`` become ISO strings,
    ``Decimal``/``UUID``/enums their text; other objects their redacted ``str()``. Integers that look like a
    card number are masked. Nesting deeper than ``MAX_DEPTH`` is cut off rather than followed.
    """
    if _depth > MAX_DEPTH:
        return "[TRUNCATED:depth]"
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return "[REDACTED:pan]" if _is_pan(str(abs(value))) else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = redact_text(str(k))
            kind = _key_class(str(k))
            if kind == "secret" and v is not None:
                out[key] = MASK
            elif kind == "pii" and v is not None and not isinstance(v, bool):
                out[key] = MASK
            elif kind == "id" and _keep_id(v):
                out[key] = v  # ids and business keys are not personal data
            elif kind == "id" and isinstance(v, list | tuple) and all(_keep_id(i) for i in v):
                out[key] = list(v)
            else:
                out[key] = redact(v, _depth=_depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [redact(v, _depth=_depth + 1) for v in items]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return redact(value.value, _depth=_depth + 1)
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", errors="replace"))
    return redact_text(str(value))
