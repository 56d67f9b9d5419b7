"""Parse each delivery once and find what applies it: an event contract, or a handler.

Routing is data, declared per provider (``integration_assets.providers``: ``destination``): a snapshot event
goes to the newest event contract ``<provider>/<name>`` (delivery ``event``), a HubSpot property change,
deletion or restore to the property patcher (``events.hubspot``), a HubSpot privacy deletion to the erasure
(``integration_assets.privacy``, docs/PRIVACY.md), never ignored.

An event type matching a pattern of ``events.ignore`` in policies.yaml (per provider, globs such as
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
from integration_assets.policies import Policies, PolicyError, load_policies
from integration_assets.providers import PROVIDERS
from integration_assets.providers.base import Destination, Unroutable
from integration_assets.queue import REJECT_CHECK_HEADER, REJECT_REASON_HEADER, Message

log = logging.getLogger(__name__)


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


def ignore_patterns(policies: Policies) -> dict[str, tuple[str, ...]]:
    """``events.ignore`` of ``policies``, per provider; ``PolicyError`` when it names a provider the registry
    does not know (policies.py cannot check that: it sits below the providers)."""
    ignore = {str(source): tuple(patterns) for source, patterns in policies.events.ignore.items()}
    unknown = sorted(set(ignore) - set(PROVIDERS))
    if unknown:
        raise PolicyError(
            f"events.ignore: {', '.join(unknown)} is not a provider (known: {', '.join(PROVIDERS)})"
        )
    return ignore


def ignored_event_types(previous: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``events.ignore`` of policies.yaml (re-read when the file changes). A policies file that cannot be
    loaded, or that names an unknown provider, keeps the previous patterns: it must not stop the drain (the
    CLI and the checks report it)."""
    try:
        return ignore_patterns(load_policies())
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
        # The package's contracts, and those of a provider that brings its own (a test's toy provider).
        roots = [None, *dict.fromkeys(p.contracts_root for p in PROVIDERS.values() if p.contracts_root)]
        for root in roots:
            for c in all_contracts(root):
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

    def route(self, message: Message, doc: dict[str, Any]) -> Route:
        source = message.source
        provider = PROVIDERS.get(source)
        if provider is None:
            raise EventRejected(
                "unknown_provider", f"no provider {source!r} is registered (known: {', '.join(PROVIDERS)})"
            )
        destination: Destination | None = None
        unroutable: Unroutable | None = None
        try:
            destination = provider.destination(doc, message.event_type)
        except Unroutable as exc:
            unroutable = exc
        # An erasure request is never ignored; anything else, routable or not, may be.
        if (destination is None or destination.ignorable) and self._ignore:
            if self.ignores(source, *provider.type_names(doc, message.event_type)):
                return Route(key="ignored", ignored=True)
        if destination is None:
            assert unroutable is not None
            raise EventRejected(unroutable.check, unroutable.reason) from unroutable
        if destination.kind == "erase":
            return Route(key=f"erase:{destination.name}", erase_table=destination.name)
        if destination.kind == "patch":
            return Route(key=f"hubspot:{destination.name}", hubspot_table=destination.name)
        contract = self._contracts.get((source, destination.name))
        if contract is None:
            raise EventRejected(
                "unknown_event_type",
                f"no event contract for {source}/{destination.name} (event type {message.event_type!r}); add "
                f"contracts/{source}/{destination.name}_event.v1.yaml with delivery: event, or unsubscribe",
            )
        return Route(key=f"contract:{contract.id}", contract=contract)
