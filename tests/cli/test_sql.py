"""``integration-assets sql``: a read-only query on the warehouse, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.warehouse.db import ensure_schema, get_engine
from integration_assets.warehouse.schema import reconciliation_mismatches


@pytest.fixture
def scratch(warehouse_url: str) -> Iterator[str]:
    """A table outside the schema, dropped again: the PostgreSQL test database is shared by the session and
    tests/warehouse/test_schema.py compares its tables with the migrations."""
    ensure_schema(warehouse_url)
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS scratch (k TEXT, v INTEGER)"))
        conn.execute(sa.text("DELETE FROM scratch"))
        conn.execute(sa.text("INSERT INTO scratch VALUES ('a%b', 1), ('c', 2), ('d', 3)"))
    yield warehouse_url
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.text("DROP TABLE scratch"))


def test_sql_prints_rows_as_a_table_and_as_json(scratch: str) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["sql", "SELECT k, v FROM scratch WHERE k LIKE 'a%' ORDER BY v"])
    assert res.exit_code == 0, res.output
    assert "1 row(s)" in res.stdout and "a%b" in res.stdout
    res = runner.invoke(main, ["sql", "--json", "--limit", "2", "SELECT k, v FROM scratch ORDER BY v"])
    assert res.exit_code == 0, res.output
    assert [json.loads(line) for line in res.stdout.splitlines()] == [
        {"k": "a%b", "v": 1},
        {"k": "c", "v": 2},
    ]
    assert "stopped at 2 rows" in res.stderr
    # The reconciliation runbooks' query runs as written.
    q = f"SELECT * FROM {reconciliation_mismatches.name} WHERE check_name = 'reconcile_deals_orders'"
    assert runner.invoke(main, ["sql", q]).exit_code == 0


def test_sql_cannot_write(scratch: str) -> None:
    runner = CliRunner()
    for statement in (
        "DELETE FROM scratch",
        "DROP TABLE scratch",
        "COMMIT; DELETE FROM scratch",  # a second statement after ending the read-only transaction
    ):
        res = runner.invoke(main, ["sql", statement])
        assert res.exit_code != 0, statement
        assert "Error" in res.output
    with get_engine(scratch).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM scratch")).scalar_one() == 3
