"""The warehouse resource hands out the engine; migrations run when a run sets it up, never in engine()."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from integration_assets.resources import WarehouseResource


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_engine_does_not_migrate_a_run_does(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    resource = WarehouseResource(url=url)
    assert "loads" not in _tables(resource.engine())

    @dg.op
    def uses_it(warehouse: WarehouseResource) -> None:
        assert "loads" in _tables(warehouse.engine())  # migrated before the op ran

    @dg.job
    def a_run() -> None:
        uses_it()

    assert a_run.execute_in_process(resources={"warehouse": resource}).success


def test_a_run_starts_while_the_warehouse_is_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'wh.db'}"  # cannot be opened: OperationalError
    resource = WarehouseResource(url=url)
    resource.setup_for_execution(dg.build_init_resource_context())  # logged, not raised: the step retries
