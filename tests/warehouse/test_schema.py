"""One metadata for every table (warehouse/schema/), and the migrations create exactly what it declares."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import integration_assets.warehouse.schema as schema
from integration_assets.warehouse.db import get_engine


def test_the_package_exports_every_table_it_declares() -> None:
    exported = {v.name for v in (getattr(schema, n) for n in schema.__all__) if isinstance(v, sa.Table)}
    assert exported == set(schema.metadata.tables)


def test_migrations_match_the_whole_metadata(warehouse_url: str) -> None:
    with get_engine(warehouse_url).connect() as conn:
        assert set(schema.metadata.tables) <= set(sa.inspect(conn).get_table_names())
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
