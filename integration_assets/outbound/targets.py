"""The target systems' clients a step writes through, built on first use (docs/ARCHITECTURE.md, "The
outbound flow"): from settings by default, or injected (tests and the sandbox point them at the fakes).

Built lazily so a run of one step needs the settings of its own target only (a label run needs no Odoo
credentials), and a module that only plans (``--dry-run`` of one step) connects to nothing else.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from integration_assets.settings import get_settings

if TYPE_CHECKING:
    from integration_assets.connectors.easypost.client import EasyPostClient
    from integration_assets.connectors.hubspot.client import HubSpotClient
    from integration_assets.connectors.odoo.writer import OdooWriter


class MissingTargetSettings(RuntimeError):
    """A step needs a target whose settings are not configured."""


class Targets:
    """Lazily built ``odoo`` (``OdooWriter``), ``easypost`` (``EasyPostClient``) and ``hubspot``
    (``HubSpotClient``). Pass instances to use them instead of settings."""

    def __init__(
        self,
        *,
        odoo: OdooWriter | None = None,
        easypost: EasyPostClient | None = None,
        hubspot: HubSpotClient | None = None,
    ) -> None:
        self._odoo = odoo
        self._easypost = easypost
        self._hubspot = hubspot
        self._lock = threading.Lock()  # steps run in a thread pool: build each client once

    @property
    def odoo(self) -> OdooWriter:
        with self._lock:
            if self._odoo is None:
                from integration_assets.connectors.odoo.writer import OdooWriter

                self._odoo = OdooWriter.from_settings()
            return self._odoo

    @property
    def easypost(self) -> EasyPostClient:
        with self._lock:
            if self._easypost is None:
                from integration_assets.connectors.easypost.client import EasyPostClient

                self._easypost = EasyPostClient.from_settings()
            return self._easypost

    @property
    def hubspot(self) -> HubSpotClient:
        with self._lock:
            if self._hubspot is None:
                from integration_assets.connectors.hubspot.client import HubSpotClient

                if not get_settings().hubspot_access_token:
                    raise MissingTargetSettings(
                        "HUBSPOT_ACCESS_TOKEN is not set (the HubSpot write-back needs it)"
                    )
                self._hubspot = HubSpotClient.from_settings()
            return self._hubspot

    def get(self, name: str) -> Any:
        """The client of target ``name`` (``odoo`` | ``easypost`` | ``hubspot``)."""
        if name not in ("odoo", "easypost", "hubspot"):
            raise KeyError(name)
        return getattr(self, name)
