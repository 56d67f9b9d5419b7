"""Dagster resources: thin handles over the plain-Python warehouse and settings."""

import logging

import dagster as dg
import sqlalchemy as sa

from integration_assets.settings import Settings, get_settings, is_set
from integration_assets.warehouse.db import ensure_schema, get_engine

log = logging.getLogger(__name__)


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse. ``url`` comes from INTEGRATION_WAREHOUSE_URL (a secret: it may hold a password);
    unset means the embedded SQLite default under INTEGRATION_DATA_DIR.

    Migrations run once, when a run sets the resource up (``setup_for_execution``), so a fresh embedded
    warehouse works out of the box; ``engine()`` only hands out the engine."""

    url: str | None = None

    def settings(self) -> Settings:
        return get_settings()

    def _url(self) -> str:
        return self.url or get_settings().warehouse_url

    def upgrade(self) -> None:
        """Bring the warehouse to the head migration (once per process; one query afterwards)."""
        ensure_schema(self._url())

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """The start of a run (of each step's process): ``upgrade``."""
        try:
            self.upgrade()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            # The warehouse is down: the step that needs it fails and retries (retry_if_transient); a step
            # that retries calls upgrade() again first.
            log.warning("warehouse not migrated at run start, unreachable: %s", type(exc).__name__)

    def engine(self) -> sa.Engine:
        return get_engine(self._url())


def warehouse_resource() -> WarehouseResource:
    # dg.EnvVar keeps the URL out of the UI and run config; only used when the variable is set.
    if is_set("INTEGRATION_WAREHOUSE_URL"):
        return WarehouseResource(url=dg.EnvVar("INTEGRATION_WAREHOUSE_URL"))
    return WarehouseResource()
