"""The webhook providers, by name: the one place a provider is declared (docs/ARCHITECTURE.md "Add a
provider"). The receiver (routes, signatures, keys), the drain (routing), ``/metrics`` (labels) and the CLI
(``--source``) read this registry; ``register`` adds one (a test's toy provider).
"""

from __future__ import annotations

from integration_assets.providers.base import Provider
from integration_assets.providers.easypost import EasyPost
from integration_assets.providers.hubspot import HubSpot
from integration_assets.providers.stripe import Stripe

PROVIDERS: dict[str, Provider] = {p.name: p for p in (Stripe(), HubSpot(), EasyPost())}


def register(provider: Provider) -> Provider:
    """Add ``provider`` (or replace the one of its name)."""
    PROVIDERS[provider.name] = provider
    return provider


def unregister(name: str) -> None:
    PROVIDERS.pop(name, None)


def get(name: str) -> Provider:
    """The provider called ``name`` (KeyError if none is registered)."""
    return PROVIDERS[name]


def names() -> tuple[str, ...]:
    return tuple(PROVIDERS)


def volatile_fields(name: str) -> frozenset[str]:
    """The fields ``name`` changes between delivery attempts of one event (none for an unknown provider)."""
    provider = PROVIDERS.get(name)
    return provider.volatile_fields if provider is not None else frozenset()


__all__ = ["PROVIDERS", "Provider", "get", "names", "register", "unregister", "volatile_fields"]
