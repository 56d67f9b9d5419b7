"""What a webhook provider declares (docs/ARCHITECTURE.md "Add a provider"), and the signature errors.

A ``Provider`` is plain data plus four functions: ``verify`` (the signature over the raw bytes and headers),
``events`` (the events of a verified delivery, each with its idempotency key), ``type_names`` (the names
``events.ignore`` of policies.yaml matches) and ``destination`` (the contract or handler an event goes to).
The receiver, the drain, ``/metrics`` and the CLI read them from the registry (``providers/__init__.py``).

Signature failures are ``SignatureError``s carrying the HTTP status and a short reason label (the ``reason``
of the rejected-requests metric); the message never contains a secret or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from integration_assets.errors import TerminalError
from integration_assets.settings import Settings

# Stripe's DEFAULT_TOLERANCE (stripe-python ``_webhook.py``) and HubSpot's MAX_ALLOWED_TIMESTAMP
# (hubspot-api-python ``utils/signature.py``) are both 300 s. Stripe's library rejects only old
# timestamps; like Svix we also reject ones more than 300 s in the future (docs/RELIABILITY.md, "Facts the
# design relies on").
DEFAULT_TOLERANCE_S = 300
EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,200}$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")

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


class PayloadError(TerminalError):
    """A verified body that is not an event (or batch of events) of this provider: refused with 400."""


class Unroutable(TerminalError):
    """An event nothing applies: dead-lettered with ``check`` and ``reason``."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{check}: {reason}")
        self.check, self.reason = check, reason


def check_window(timestamp_s: float, now_s: float, tolerance_s: float) -> None:
    if timestamp_s < now_s - tolerance_s:
        raise StaleTimestamp(f"timestamp is {now_s - timestamp_s:.0f}s old (tolerance {tolerance_s}s)")
    if timestamp_s > now_s + tolerance_s:
        raise FutureTimestamp(
            f"timestamp is {timestamp_s - now_s:.0f}s in the future (tolerance {tolerance_s}s)"
        )


def hmac_sha256(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def text(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def event_type(value: Any, what: str) -> str:
    """A provider's event type as queued (1..128 of ``[A-Za-z0-9_.:-]``), else ``PayloadError``."""
    if not isinstance(value, str) or not EVENT_TYPE.match(value):
        raise PayloadError(f"{what} missing or malformed")
    return value


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a signature covers: the method, the URL the provider posted to (the public one behind a proxy),
    the request headers (names lower-case) and the raw body."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a verified delivery. ``key`` is the queue message id (the idempotency key), ``doc`` the
    parsed event (its content fingerprint is taken without the provider's ``volatile_fields``). ``invalid``
    says why an element of a batch is not an event: it is queued anyway, and the drain dead-letters it."""

    key: str | None  # None: keyed by its content (an element that is not an event)
    event_type: str
    body: bytes
    doc: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    invalid: str | None = None


@dataclass(frozen=True, slots=True)
class Destination:
    """Where an event goes: ``contract`` — the newest event contract ``<provider>/<name>`` (delivery
    ``event``); ``patch`` — the HubSpot property patcher of table ``name`` (``events.hubspot``), which also
    applies deletions and restores; ``erase`` — a GDPR erasure of a record of table ``name`` (never ignored)."""

    kind: Literal["contract", "patch", "erase"]
    name: str

    @property
    def ignorable(self) -> bool:
        return self.kind != "erase"


class Provider:
    """One webhook provider. Subclasses set the class attributes and implement the four functions."""

    name: ClassVar[str]
    secret_vars: ClassVar[tuple[str, ...]]  # settings.ENV_VARS names holding the secret(s)
    signature_headers: ClassVar[tuple[str, ...]]  # request headers the signature needs (missing: 400)
    kept_headers: ClassVar[tuple[str, ...]] = ()  # its non-secret request headers kept with the message
    # Fields that change between delivery attempts of one event (left out of the content fingerprint).
    volatile_fields: ClassVar[frozenset[str]] = frozenset()
    # Event contracts outside the package's contracts directory (a test's own provider), or None.
    contracts_root: ClassVar[Path | None] = None

    @property
    def path(self) -> str:
        return f"/webhooks/{self.name}"

    def secrets(self, settings: Settings) -> tuple[str, ...]:
        """The configured secret(s); empty when the provider is not configured (its endpoint answers 503)."""
        return tuple(v for v in (settings.value(name) for name in self.secret_vars) if v)

    def verify(
        self,
        request: SignedRequest,
        secrets: tuple[str, ...],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Clock,
    ) -> dict[str, str]:
        """Raise a ``SignatureError`` unless the request is authentic and fresh; return headers to keep."""
        raise NotImplementedError

    def events(self, doc: Any, body: bytes) -> list[Event]:
        """The events of a verified, parsed delivery (``body`` is its raw bytes); ``PayloadError`` if none."""
        raise NotImplementedError

    def type_names(self, doc: Mapping[str, Any], event_type: str) -> tuple[str, ...]:
        """The names of an event's type that ``events.ignore`` patterns are matched against."""
        return (event_type, text(doc.get("type")) or "", text(doc.get("description")) or "")

    def destination(self, doc: Mapping[str, Any], event_type: str) -> Destination:
        """Where the event goes; ``Unroutable`` if nothing applies it."""
        raise NotImplementedError
