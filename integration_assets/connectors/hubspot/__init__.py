"""HubSpot CRM v3 connector: :class:`HubSpotClient` (live) and ``fake.FakeHubSpot`` (a local server)."""

from integration_assets.connectors.hubspot.client import (
    DEFAULT_BASE_URL,
    OBJECT_TYPES,
    HubSpotClient,
    contract_fields,
)
from integration_assets.connectors.hubspot.errors import (
    HubSpotAuthError,
    HubSpotDailyLimit,
    HubSpotRejected,
    classify_hubspot,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "OBJECT_TYPES",
    "HubSpotAuthError",
    "HubSpotClient",
    "HubSpotDailyLimit",
    "HubSpotRejected",
    "classify_hubspot",
    "contract_fields",
]
