"""Shared fixtures: isolated env and storage per test, and real warehouses (SQLite and PostgreSQL).

In CI (CI=true) a test that needs PostgreSQL or RabbitMQ fails when the service is unreachable; on a
laptop without them it is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.settings import ENV_VARS

PG_ADMIN_URL = os.environ.get(
    "INTEGRATION_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("INTEGRATION_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Shared fixtures that live beside the helpers they go with (tests/support/).
pytest_plugins = ["tests.support.contracts"]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def service_required(name: str, host: str, port: int) -> None:
    """Fail (CI) or skip (elsewhere) when a real service the test needs is down."""
    if _reachable(host, port):
        return
    msg = f"{name} is unreachable on {host}:{port} (run scripts/ensure_services.sh)"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data dir, inbox and SQLite warehouse; no env var leaks in from the shell."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(data))
    monkeypatch.setenv("INTEGRATION_INBOX_SETTLE_SECONDS", "0")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return data


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    service_required("PostgreSQL", "127.0.0.1", 5432)
    name = f"ia_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    from integration_assets.warehouse import db

    db.upgrade(url)
    yield url
    db._engine.cache_clear()
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    from integration_assets.warehouse.db import get_engine
    from integration_assets.warehouse.schema import metadata

    engine = get_engine(url)
    names = [t.name for t in metadata.sorted_tables]
    with engine.begin() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        todo = ", ".join(f'"{n}"' for n in names if n in existing)
        if todo:
            conn.execute(sa.text(f"TRUNCATE {todo} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated, empty warehouse: a SQLite file per test, or the session's PostgreSQL database truncated."""
    from integration_assets.warehouse import db

    if request.param == "sqlite":
        url = f"sqlite:///{isolated_env / 'warehouse.db'}"
        db.upgrade(url)
    else:
        url = request.getfixturevalue("pg_database")
        _truncate_all(url)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    return url


@pytest.fixture
def engine(warehouse_url: str) -> sa.Engine:
    """The engine of ``warehouse_url``."""
    from integration_assets.warehouse.db import get_engine

    return get_engine(warehouse_url)


@pytest.fixture
def amqp_url() -> str:
    service_required("RabbitMQ", "127.0.0.1", 5672)
    return AMQP_URL
