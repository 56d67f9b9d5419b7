"""Parse each delivery once and find what applies it: an event contract, or the HubSpot property patcher.

Routing is data, per source system:

- Stripe: by ``data.object.object`` (payment_intent, charge, refund), so every event that carries a snapshot
  of such an object updates it, whatever its type (``payment_intent.succeeded``, ``charge.refund.updated``
  carries a refund); the contract is ``contracts/stripe/<object>_event.vN.yaml`` (delivery ``event``).
- EasyPost: by the family of ``description`` (``tracker.updated`` → tracker).
- HubSpot: by ``subscriptionType``; ``<object>.propertyChange`` for contact, company and deal patches the
  canonical row (values mapped by the HubSpot API contract of that object, see ``events.hubspot``);
  ``<object>.deletion`` and ``<object>.restore`` set or clear its ``archived_at``. The generic format
  (``object.<kind>`` with ``objectTypeId`` 0-1/0-2/0-3) goes to the same handlers (``hubspot_kind``).
  ``contact.privacyDeletion`` is a GDPR erasure request (``integration_assets.privacy``, docs/PRIVACY.md),
  never ignored.

An event type matching a pattern of ``events.ignore`` in policies.yaml (per source, globs such as
``batch.*``) is ignored: recorded in ``processed_events`` with outcome ``ignored`` (counted, shown by
``integration-assets status``), never applied nor dead-lettered. Anything else is an unknown event type:
dead-lettered at once with a reason naming the missing contract.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from typing import Any

from integration_assets.contracts.spec import Contract, all_contracts
from integration_assets.events.errors import EventRejected
from integration_assets.policies import PolicyError, load_policies
from integration_assets.queue import REJECT_CHECK_HEADER, REJECT_REASON_HEADER, Message

log = logging.getLogger(__name__)

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


def hubspot_kind(doc: dict[str, Any], default: str = "") -> str:
    """The event's subscription type in the legacy ``<object>.<kind>`` form: a generic ``object.<kind>`` event
    of a handled object type becomes ``contact.<kind>``/``company.<kind>``/``deal.<kind>``, so both formats go
    to the same handlers (and the same ``events.ignore`` patterns)."""
    kind = _text(doc.get("subscriptionType")) or default
    if kind.startswith("object."):
        obj = HUBSPOT_OBJECT_TYPE_IDS.get(str(doc.get("objectTypeId")))
        if obj is not None:
            return f"{obj}.{kind.removeprefix('object.')}"
    return kind


@dataclass(frozen=True, slots=True)
class Route:
    """What applies an event: ``contract`` for snapshot events, ``hubspot_table`` for property changes;
    ``ignored`` for a type ``policies.yaml`` (``events.ignore``) says the team does not need."""

    key: str
    contract: Contract | None = None
    hubspot_table: str | None = None
    ignored: bool = False
    erase_table: str | None = None  # a GDPR erasure request for a record of this table


def parse(message: Message) -> dict[str, Any]:
    """The event body as a JSON object (the receiver verified and parsed it once; a replayed or hand-made
    message may still be broken). A message the receiver marked as not an event (a bad element of a
    HubSpot batch) is rejected with the receiver's check and reason."""
    check = message.headers.get(REJECT_CHECK_HEADER)
    if check:
        raise EventRejected(
            check, message.headers.get(REJECT_REASON_HEADER) or "refused by the webhook receiver"
        )
    try:
        doc = json.loads(message.body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EventRejected("unparseable", f"body is not JSON: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise EventRejected("unparseable", f"body is a JSON {type(doc).__name__}, not an object")
    return doc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def ignored_event_types(previous: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``events.ignore`` of policies.yaml (re-read when the file changes). A policies file that cannot be
    loaded keeps the previous patterns: it must not stop the drain (the CLI and the checks report it)."""
    try:
        return {str(source): patterns for source, patterns in load_policies().events.ignore.items()}
    except PolicyError as exc:
        log.warning("events.ignore not reloaded: %s", exc)
        return previous


class Router:
    """Finds the newest event contract per (system, entity). ``refresh`` (once per batch) re-reads the
    registry, which is cached on file modification times, so a contract edited on disk applies at once."""

    def __init__(self) -> None:
        self._contracts: dict[tuple[str, str], Contract] = {}
        self._ignore: dict[str, tuple[str, ...]] = {}
        self.refresh()

    def refresh(self) -> None:
        newest: dict[tuple[str, str], Contract] = {}
        for c in all_contracts():
            if c.delivery != "event":
                continue
            key = (c.system, c.entity)
            if key not in newest or c.version > newest[key].version:
                newest[key] = c
        self._contracts = newest
        self._ignore = ignored_event_types(self._ignore)

    def ignores(self, source: str, *kinds: str) -> bool:
        """True when one of ``kinds`` (an event's type names) matches a pattern of ``events.ignore``."""
        patterns = self._ignore.get(source, ())
        return any(fnmatch.fnmatchcase(k, p) for p in patterns for k in kinds if k)

    def _event_contract(self, system: str, entity: str) -> Contract | None:
        return self._contracts.get((system, entity))

    def route(self, message: Message, doc: dict[str, Any]) -> Route:
        source = message.source
        if source == "hubspot" and (erase := HUBSPOT_ERASURES.get(hubspot_kind(doc, message.event_type))):
            return Route(key=f"erase:{erase}", erase_table=erase)  # before events.ignore: never ignored
        if self._ignore:
            kinds = [message.event_type, _text(doc.get("type")) or "", _text(doc.get("description")) or ""]
            if source == "hubspot":
                kinds += [_text(doc.get("subscriptionType")) or "", hubspot_kind(doc, message.event_type)]
            if self.ignores(source, *kinds):
                return Route(key="ignored", ignored=True)
        if source == "hubspot":
            kind = hubspot_kind(doc, message.event_type)
            table = HUBSPOT_PROPERTY_CHANGES.get(kind) or HUBSPOT_ARCHIVE_CHANGES.get(kind, (None, False))[0]
            if table is None:
                raise EventRejected(
                    "unknown_event_type",
                    f"no handler for HubSpot subscription type {kind!r} (handled: "
                    f"{', '.join(sorted([*HUBSPOT_PROPERTY_CHANGES, *HUBSPOT_ARCHIVE_CHANGES]))})",
                )
            return Route(key=f"hubspot:{table}", hubspot_table=table)
        if source == "stripe":
            data = doc.get("data")
            obj = data.get("object") if isinstance(data, dict) else None
            family = _text(obj.get("object")) if isinstance(obj, dict) else None
            if family is None:
                raise EventRejected("invalid_payload", "Stripe event without data.object.object")
        else:  # easypost
            description = _text(doc.get("description")) or message.event_type
            family = description.split(".", 1)[0]
        contract = self._event_contract(source, family)
        if contract is None:
            raise EventRejected(
                "unknown_event_type",
                f"no event contract for {source}/{family} (event type {message.event_type!r}); add "
                f"contracts/{source}/{family}_event.v1.yaml with delivery: event, or unsubscribe",
            )
        return Route(key=f"contract:{contract.id}", contract=contract)
