"""Migration 0008 creates exactly what the code declares for the erasures (contacts.erased_at, privacy_erasures),
and goes down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from integration_assets.warehouse.db import alembic_config, get_engine, upgrade
from integration_assets.warehouse.schema import metadata
from tests.events.test_schema import _table_of


def _diffs(url: str) -> list[object]:
    with get_engine(url).connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    return [d for d in diffs if _table_of(d) in ("contacts", "privacy_erasures")]


def test_migration_matches_the_declared_tables(warehouse_url: str) -> None:
    assert _diffs(warehouse_url) == []


def test_down_and_up_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "0007_event_content_hash")
    with get_engine(url).connect() as conn:
        cols = {r[1] for r in conn.exec_driver_sql("PRAGMA table_info(contacts)")}
        assert "erased_at" not in cols
        assert (
            conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE name = 'privacy_erasures'"
            ).scalar_one()
            == 0
        )
    upgrade(url)
    assert _diffs(url) == []
