"""``integration-assets sql "SELECT …"``: read the warehouse (SQLite or PostgreSQL) without a database client.

The runbooks of the reconciliation checks start from ``SELECT * FROM reconciliation_mismatches …``; this runs
such a query against the configured warehouse (INTEGRATION_WAREHOUSE_URL, the embedded SQLite file by default)
and prints the rows. Read-only by construction, not by parsing the SQL: SQLite runs the statement with
``PRAGMA query_only`` on, PostgreSQL in a ``READ ONLY`` transaction, and the transaction is rolled back.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine


def run_read_only(engine: sa.Engine, query: str, limit: int) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """(columns, at most ``limit`` rows, whether there were more) of ``query``, run read-only.

    One statement only: SQLite's driver refuses several, and on PostgreSQL the query is prepared (extended
    protocol), which refuses ``COMMIT; DELETE …`` that would end the READ ONLY transaction first."""
    with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA query_only = ON")
        elif dialect == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        cursor = conn.connection.cursor()
        try:
            if dialect == "postgresql":
                # psycopg 3: a prepared statement goes through the extended protocol, one statement only.
                cursor.execute(query, prepare=True)  # type: ignore[call-arg]
            else:
                cursor.execute(query)
            if cursor.description is None:
                return [], [], False
            columns = [d[0] for d in cursor.description]
            rows = [tuple(r) for r in cursor.fetchmany(limit + 1)]
        finally:
            cursor.close()
            conn.rollback()
            if dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = OFF")  # the pooled connection is reused
    return columns, rows[:limit], len(rows) > limit


@click.command("sql")
@click.argument("query")
@click.option("--limit", type=int, default=1000, show_default=True, help="Rows printed at most.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
def sql(query: str, limit: int, as_json: bool) -> None:
    """Run a read-only SQL query on the warehouse (SQLite or PostgreSQL) and print the rows."""
    engine = get_engine(get_settings().warehouse_url)
    try:
        columns, rows, more = run_read_only(engine, query, limit)
    except (sa.exc.DBAPIError, engine.dialect.loaded_dbapi.Error) as exc:
        # The driver's message names the error (a typo, a write refused as read-only), never the password.
        raise click.ClickException(
            str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:500]
        ) from exc
    if as_json:
        for row in rows:
            click.echo(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    else:
        table = Table(
            title=f"{len(rows)} row(s){' (more not shown: --limit)' if more else ''}", title_justify="left"
        )
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console(width=max(Console().width, 120)).print(table)
    if more:
        click.echo(f"stopped at {limit} rows (--limit)", err=True)
    sys.exit(0)
