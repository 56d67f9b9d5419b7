"""The target systems' clients a step writes through, built on first use (docs/ARCHITECTURE.md, "The
outbound flow"): from settings by default, or injected (tests and the sandbox point them at the fakes).

Built lazily so a run of one step needs the settings of its own target only (a label run needs no Odoo
credentials), and a module that only plans (``--dry-run`` of one step) connects to nothing else.

A client built from settings asks the shared API budget of its target (``warehouse/api_budget.py``, when
policies.yaml ``api_budget:`` has one) before each call, with priority ``outbound``: ahead of backfills, beside
the live pulls of the same account. Injected clients are used as given.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from integration_assets.settings import get_settings
from integration_assets.warehouse.api_budget import api_budget_for
from integration_assets.warehouse.db import get_engine

if TYPE_CHECKING:
    import sqlalchemy as sa

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
        budget_engine: sa.Engine | None = None,
    ) -> None:
        self._budget_engine = budget_engine  # the warehouse holding the API budgets (default: settings')
        self._odoo = odoo
        self._easypost = easypost
        self._hubspot = hubspot
        self._lock = threading.Lock()  # steps run in a thread pool: build each client once

    @property
    def odoo(self) -> OdooWriter:
        with self._lock:
            if self._odoo is None:
                from integration_assets.connectors.odoo.writer import OdooWriter

                self._odoo = self._budgeted(OdooWriter.from_settings(), "odoo")
            return self._odoo

    @property
    def easypost(self) -> EasyPostClient:
        with self._lock:
            if self._easypost is None:
                from integration_assets.connectors.easypost.client import EasyPostClient

                self._easypost = self._budgeted(EasyPostClient.from_settings(), "easypost")
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
                self._hubspot = self._budgeted(HubSpotClient.from_settings(), "hubspot")
            return self._hubspot

    def _budgeted(self, client: Any, api: str) -> Any:
        budget = api_budget_for(self._budget_engine or get_engine(), api)
        client.http.use_api_budget(budget, "outbound")
        return client

    def get(self, name: str) -> Any:
        """The client of target ``name`` (``odoo`` | ``easypost`` | ``hubspot``)."""
        if name not in ("odoo", "easypost", "hubspot"):
            raise KeyError(name)
        return getattr(self, name)
