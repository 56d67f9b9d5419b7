"""Dagster resources: thin handles over the plain-Python warehouse and settings."""

import dagster as dg
import sqlalchemy as sa

from integration_assets.settings import Settings, get_settings, is_set
from integration_assets.warehouse.db import ensure_schema, get_engine


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse. ``url`` comes from INTEGRATION_WAREHOUSE_URL (a secret: it may hold a password);
    unset means the embedded SQLite default under INTEGRATION_DATA_DIR."""

    url: str | None = None

    def settings(self) -> Settings:
        return get_settings()

    def engine(self) -> sa.Engine:
        url = self.url or get_settings().warehouse_url
        ensure_schema(url)
        return get_engine(url)


def warehouse_resource() -> WarehouseResource:
    # dg.EnvVar keeps the URL out of the UI and run config; only used when the variable is set.
    if is_set("INTEGRATION_WAREHOUSE_URL"):
        return WarehouseResource(url=dg.EnvVar("INTEGRATION_WAREHOUSE_URL"))
    return WarehouseResource()
