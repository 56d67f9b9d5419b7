"""Parse each delivery once and find what applies it: an event contract, or the HubSpot property patcher.

Routing is data, per source system:

- Stripe: by ``data.object.object`` (payment_intent, charge, refund), so every event that carries a snapshot
  of such an object updates it, whatever its type (``payment_intent.succeeded``, ``charge.refund.updated``
  carries a refund); the contract is ``contracts/stripe/<object>_event.vN.yaml`` (delivery ``event``).
- EasyPost: by the family of ``description`` (``tracker.updated`` → tracker).
- HubSpot: by ``subscriptionType``; ``<object>.propertyChange`` for contact, company and deal patches the
  canonical row (values mapped by the HubSpot API contract of that object, see ``events.hubspot``);
  ``<object>.deletion`` and ``<object>.restore`` set or clear its ``archived_at``.

Anything else is an unknown event type: dead-lettered at once with a reason naming the missing contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from integration_assets.contracts.spec import Contract, all_contracts
from integration_assets.events.errors import EventRejected
from integration_assets.queue import Message

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


@dataclass(frozen=True, slots=True)
class Route:
    """What applies an event: ``contract`` for snapshot events, ``hubspot_table`` for property changes."""

    key: str
    contract: Contract | None = None
    hubspot_table: str | None = None


def parse(message: Message) -> dict[str, Any]:
    """The event body as a JSON object (the receiver verified and parsed it once; a replayed or hand-made
    message may still be broken)."""
    try:
        doc = json.loads(message.body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EventRejected("unparseable", f"body is not JSON: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise EventRejected("unparseable", f"body is a JSON {type(doc).__name__}, not an object")
    return doc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class Router:
    """Finds the newest event contract per (system, entity). ``refresh`` (once per batch) re-reads the
    registry, which is cached on file modification times, so a contract edited on disk applies at once."""

    def __init__(self) -> None:
        self._contracts: dict[tuple[str, str], Contract] = {}
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

    def _event_contract(self, system: str, entity: str) -> Contract | None:
        return self._contracts.get((system, entity))

    def route(self, message: Message, doc: dict[str, Any]) -> Route:
        source = message.source
        if source == "hubspot":
            kind = _text(doc.get("subscriptionType")) or message.event_type
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
