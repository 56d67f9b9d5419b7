"""Engine creation and migrations for the warehouse."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.settings import get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The head of the migration history (a test keeps it equal to Alembic's): a warehouse already there needs no
# Alembic at all, which keeps a command that finds nothing to do fast.
HEAD_REVISIONS = frozenset({"0012_partition_loads"})


def normalise_url(url: str) -> str:
    """Postgres goes through psycopg 3 (``postgresql+psycopg``) whatever scheme the user wrote."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@functools.cache
def _engine(url: str) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets the Dagster UI and the CLI read while a load writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(url: str | None = None) -> sa.Engine:
    """The warehouse engine for ``url`` (default: INTEGRATION_WAREHOUSE_URL), one per URL per process."""
    return _engine(url or get_settings().warehouse_url)


@contextlib.contextmanager
def begin_write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that will write, committed on success (like ``engine.begin()``).

    On SQLite it takes the write lock up front (``BEGIN IMMEDIATE``): a deferred transaction that reads and
    then writes fails at once with "database is locked" when another writer committed in between, while an
    immediate one waits its turn (up to the connection's busy timeout).
    """
    with engine.begin() as conn:
        claim_writer(conn)
        yield conn


def claim_writer(conn: sa.Connection) -> None:
    """First statement of a writing transaction: on SQLite, take the write lock now (see begin_write)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config(url: str | None = None) -> Any:
    # lazy: Alembic (and Mako) only when the schema is behind its head, saves 750 ms per command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option(
        "sqlalchemy.url", normalise_url(url or get_settings().warehouse_url).replace("%", "%%")
    )
    return cfg


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Bring the warehouse schema to the latest migration (idempotent)."""
    # lazy: Alembic (and Mako) only when the schema is behind its head, saves 750 ms per command
    from alembic import command

    get_engine(url)  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), revision)


def current_revisions(url: str | None = None) -> set[str]:
    """The revisions the warehouse is stamped with (``alembic_version``); empty for a new warehouse."""
    try:
        with get_engine(url).connect() as conn:
            return {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    except sa.exc.DBAPIError:  # no table yet (or no database file)
        return set()


_migrated: set[str] = set()


def at_head(url: str | None = None) -> bool:
    """Whether the warehouse is at the newest migration; asks the database once per process per URL once
    it is (a schema does not go back), so a sensor tick can ask every time for nothing."""
    key = normalise_url(url or get_settings().warehouse_url)
    if key not in _migrated and current_revisions(key) == HEAD_REVISIONS:
        _migrated.add(key)
    return key in _migrated


def ensure_schema(url: str | None = None) -> None:
    """Run migrations once per process for this URL (cheap afterwards)."""
    key = normalise_url(url or get_settings().warehouse_url)
    if not at_head(key):
        upgrade(key)
        _migrated.add(key)
