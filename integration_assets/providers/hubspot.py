"""HubSpot: a JSON array of events per delivery, signed with ``X-HubSpot-Signature-v3`` (docs/SOURCES.md §1.5,
docs/PROVIDERS.md).

Keys: ``eventId`` is not unique (HubSpot's own test deliveries all carry ``eventId`` 100), so the key is
``hubspot:<eventId>:<digest>``, a SHA-256 of the fields that identify one change: eventId, subscriptionId,
portalId, objectTypeId, objectId, occurredAt, subscriptionType, propertyName and propertyValue (which enters
the key only through the hash). A redelivery carries the same fields and gets the same key.

Routing is by ``subscriptionType``: ``<object>.propertyChange`` for contact, company and deal patches the
canonical row (values mapped by the HubSpot API contract of that object, see ``events.hubspot``);
``<object>.deletion`` and ``<object>.restore`` set or clear its ``archived_at``. The generic format
(``object.<kind>`` with ``objectTypeId`` 0-1/0-2/0-3) goes to the same handlers (``hubspot_kind``).
``contact.privacyDeletion`` is a GDPR erasure request (``integration_assets.privacy``, docs/PRIVACY.md),
never ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from integration_assets.providers.base import (
    DEFAULT_TOLERANCE_S,
    EVENT_TYPE,
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
    hmac_sha256,
    text,
)

# HubSpot webhook subscription types handled, and the canonical table each one patches.
HUBSPOT_PROPERTY_CHANGES: dict[str, str] = {
    "contact.propertyChange": "contacts",
    "company.propertyChange": "companies",
    "deal.propertyChange": "deals",
}
# Deletions and restores: the row's archived_at becomes the deletion time, or null again.
HUBSPOT_ARCHIVE_CHANGES: dict[str, tuple[str, bool]] = {
    f"{obj}.{kind}": (table, kind == "deletion")
    for obj, table in (("contact", "contacts"), ("company", "companies"), ("deal", "deals"))
    for kind in ("deletion", "restore")
}
# GDPR erasure requests (privacyDeletion: HubSpot sends it for contacts only, docs/PRIVACY.md): the record's
# personal data is erased everywhere we keep it (integration_assets.privacy), not patched.
HUBSPOT_ERASURES: dict[str, str] = {"contact.privacyDeletion": "contacts"}
# HubSpot's generic webhook format (``object.propertyChange``, ``object.deletion``, …) names the object by
# ``objectTypeId`` (docs/PROVIDERS.md): the standard objects handled here, by their legacy names.
HUBSPOT_OBJECT_TYPE_IDS: dict[str, str] = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
# What identifies one HubSpot change, besides propertyValue (hashed with them: any length, any type).
HUBSPOT_KEY_FIELDS = (
    "eventId",
    "subscriptionId",
    "portalId",
    "objectTypeId",
    "objectId",
    "occurredAt",
    "subscriptionType",
    "propertyName",
)


def hubspot_kind(doc: Mapping[str, Any], default: str = "") -> str:
    """The event's subscription type in the legacy ``<object>.<kind>`` form: a generic ``object.<kind>`` event
    of a handled object type becomes ``contact.<kind>``/``company.<kind>``/``deal.<kind>``, so both formats go
    to the same handlers (and the same ``events.ignore`` patterns)."""
    kind = text(doc.get("subscriptionType")) or default
    if kind.startswith("object."):
        obj = HUBSPOT_OBJECT_TYPE_IDS.get(str(doc.get("objectTypeId")))
        if obj is not None:
            return f"{obj}.{kind.removeprefix('object.')}"
    return kind


def event_key(event: Mapping[str, Any]) -> str:
    """``hubspot:<eventId>:<digest of the identifying fields>`` (the element must carry ``eventId``)."""
    # repr of a tuple of JSON values is unambiguous (strings quoted and escaped, 1 / 1.0 / True / "1" all
    # distinct) and costs one C call; propertyValue enters whole, so the digest also hashes the value.
    ident = repr(tuple(event.get(name) for name in (*HUBSPOT_KEY_FIELDS, "propertyValue")))
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"hubspot:{event.get('eventId')}:{digest}"


def sign(method: str, uri: str, body: bytes, timestamp_ms: int, client_secret: str) -> str:
    """``X-HubSpot-Signature-v3``: base64(HMAC-SHA256(client secret, method + URI + body + timestamp))."""
    digest = hmac_sha256(
        client_secret.encode("utf-8"),
        method.upper().encode("ascii"),
        uri.encode("utf-8"),
        body,
        str(timestamp_ms).encode("ascii"),
    )
    return base64.b64encode(digest).decode("ascii")


def verify(
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
    expected = sign(method, uri, body, int(timestamp), client_secret)
    if not hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("ascii", errors="replace")):
        raise InvalidSignature("X-HubSpot-Signature-v3 does not match the request")
    check_window(int(timestamp) / 1000, clock(), tolerance_s)
    return int(timestamp)


def _element_error(event: Any) -> str | None:
    """Why one element of a HubSpot batch cannot be queued as an event (None: it can)."""
    if not isinstance(event, dict):
        return f"element is a JSON {type(event).__name__}, not an object"
    event_id = event.get("eventId")
    if isinstance(event_id, bool) or not (
        (isinstance(event_id, int) and event_id >= 0) or (isinstance(event_id, str) and event_id.isdigit())
    ):
        return "element has no numeric eventId"
    kind = event.get("subscriptionType")
    if not isinstance(kind, str) or not EVENT_TYPE.match(kind):
        return "element has no valid subscriptionType"
    return None


class HubSpot(Provider):
    name = "hubspot"
    secret_vars = ("HUBSPOT_CLIENT_SECRET",)
    signature_headers = ("x-hubspot-signature-v3", "x-hubspot-request-timestamp")
    kept_headers = ("x-hubspot-request-timestamp",)
    volatile_fields = frozenset({"attemptNumber"})

    def verify(
        self,
        request: SignedRequest,
        secrets: tuple[str, ...],
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Clock = time.time,
    ) -> dict[str, str]:
        verify(
            method=request.method,
            uri=request.url,
            body=request.body,
            signature=request.headers.get("x-hubspot-signature-v3"),
            timestamp=request.headers.get("x-hubspot-request-timestamp"),
            client_secret=secrets[0] if secrets else None,
            tolerance_s=tolerance_s,
            clock=clock,
        )
        return {}

    def events(self, doc: Any, body: bytes) -> list[Event]:
        """One event per element of the array, keyed by ``event_key``. The signature covers the whole
        array, so each element (already verified) is re-encoded on its own.

        A batch is split, not refused: an element that is not an event (not an object, no numeric
        ``eventId``, no ``subscriptionType``) comes back with ``invalid`` set; the receiver queues it marked
        for the dead letters while the valid elements are applied. Only a body that is not a non-empty
        array is refused."""
        if not isinstance(doc, list) or not doc:
            raise PayloadError("HubSpot sends a non-empty JSON array")
        events = []
        for index, event in enumerate(doc):
            # ASCII escapes: a lone surrogate in the input must not make the encoding fail.
            element = json.dumps(event, separators=(",", ":")).encode("ascii")
            headers = {"x-hubspot-batch-index": str(index), "x-hubspot-batch-size": str(len(doc))}
            error = _element_error(event)
            if error is None:
                events.append(Event(event_key(event), event["subscriptionType"], element, event, headers))
                continue
            kind = event.get("subscriptionType") if isinstance(event, dict) else None
            events.append(
                Event(
                    None,  # keyed by content: a redelivered batch gives the same key
                    kind if isinstance(kind, str) and EVENT_TYPE.match(kind) else "invalid",
                    element,
                    event,
                    headers,
                    invalid=f"HubSpot batch element {index} of {len(doc)}: {error}",
                )
            )
        return events

    def type_names(self, doc: Mapping[str, Any], event_type: str) -> tuple[str, ...]:
        return (
            *super().type_names(doc, event_type),
            text(doc.get("subscriptionType")) or "",
            hubspot_kind(doc, event_type),
        )

    def destination(self, doc: Mapping[str, Any], event_type: str) -> Destination:
        kind = hubspot_kind(doc, event_type)
        if erase := HUBSPOT_ERASURES.get(kind):
            return Destination("erase", erase)
        table = HUBSPOT_PROPERTY_CHANGES.get(kind) or HUBSPOT_ARCHIVE_CHANGES.get(kind, (None, False))[0]
        if table is None:
            raise Unroutable(
                "unknown_event_type",
                f"no handler for HubSpot subscription type {kind!r} (handled: "
                f"{', '.join(sorted([*HUBSPOT_PROPERTY_CHANGES, *HUBSPOT_ARCHIVE_CHANGES]))})",
            )
        return Destination("patch", table)
