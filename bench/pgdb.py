"""A throw-away, migrated PostgreSQL database per benchmark run (shared by the event benchmarks)."""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

from integration_assets.warehouse import db

PG_ADMIN = os.environ.get(
    "INTEGRATION_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def fresh_database(prefix: str) -> tuple[str, str]:
    """Create ``<prefix>_<random>`` and run the migrations; returns (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    db.upgrade(url)
    return name, url


def drop_database(name: str) -> None:
    db._engine.cache_clear()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()
