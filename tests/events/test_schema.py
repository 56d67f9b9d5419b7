"""Migration 0005 creates exactly what the code declares for payments, shipment_events and processed_events,
and leaves the migration chain with one head."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from integration_assets.warehouse.db import HEAD_REVISIONS, alembic_config, ensure_schema, get_engine, upgrade
from integration_assets.warehouse.schema import metadata

OURS = {"payments", "shipment_events", "processed_events"}


def _table_of(diff: object) -> str | None:
    item = diff[0] if isinstance(diff, list) else diff
    for part in item[1:] if isinstance(item, tuple) else ():
        name = getattr(part, "name", None) if not isinstance(part, str) else None
        table = getattr(part, "table", None)
        if table is not None and getattr(table, "name", None):
            return table.name
        if name:
            return name
        if isinstance(part, str):
            return part
    return None


def test_migration_matches_the_declared_tables(warehouse_url: str) -> None:
    with get_engine(warehouse_url).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diffs if _table_of(d) in OURS] == []


def test_one_head_and_the_code_knows_it() -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1
    assert set(heads) == HEAD_REVISIONS  # ensure_schema skips Alembic when the warehouse is stamped with it


def test_ensure_schema_migrates_a_warehouse_behind_the_head(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    upgrade(url, "0001_foundation")
    ensure_schema(url)
    with get_engine(url).connect() as conn:
        assert {
            r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")
        } == HEAD_REVISIONS
