"""Queue fixtures: the same tests run on the SQL queue (SQLite and Postgres) and on RabbitMQ.

RabbitMQ topology is prefixed per test and deleted afterwards (the broker is shared).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.queue import DeadLetterSink, Delivery, Message, Queue
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.queue.sql import SqlQueue
from integration_assets.warehouse import db
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import dead_letters
from tests.conftest import _truncate_all
from tests.support.tcp_proxy import TcpProxy

# Where the queues under test record their dead letters (the store's writer, as the event path wires it).
SINK: DeadLetterSink = write_event_dead_letters
# Short retry tiers so backoff tests take fractions of a second.
FAST_TIERS = "0.2,0.4"


def amqp_queue_url(base: str, prefix: str, **options: Any) -> str:
    options = {"prefix": prefix, "retry_delays_s": FAST_TIERS, "reconnect_max_s": 2, **options}
    sep = "&" if "?" in base else "?"
    return base + sep + urlencode(options)


def message(i: int | str = 1, *, source: str = "stripe", body: bytes | None = None, **kw: Any) -> Message:
    return Message(
        id=f"{source}:evt_{i}",
        source=source,  # type: ignore[arg-type]
        event_type=kw.pop("event_type", "payment_intent.succeeded"),
        body=body if body is not None else json.dumps({"id": f"evt_{i}", "n": str(i)}).encode(),
        headers=kw.pop("headers", {"user-agent": "Stripe/1.0", "content-type": "application/json"}),
        **kw,
    )


def dead_letter_rows(warehouse_url: str) -> list[dict[str, Any]]:
    with get_engine(warehouse_url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(dead_letters).order_by(dead_letters.c.id))]


def receive_n(q: Queue, n: int, timeout_s: float = 5.0, **kw: Any) -> list[Delivery]:
    """Receive until ``n`` deliveries arrived (a receive returns what is there: maybe part of a batch)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += q.receive(n - len(got), wait_s=max(0.0, min(1.0, deadline - time.monotonic())), **kw)
    return got


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite warehouse, copied per test: far cheaper than running the migrations every time."""
    path = tmp_path_factory.mktemp("template") / "warehouse.db"
    db.upgrade(f"sqlite:///{path}")
    db._engine.cache_clear()  # release the file before it is copied
    return path


def _fresh_warehouse(kind: str, request: pytest.FixtureRequest, tmp_path: Path, template: Path) -> str:
    if kind == "postgres":
        url = request.getfixturevalue("pg_database")
        _truncate_all(url)
        return url
    path = tmp_path / "warehouse.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_warehouse(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A migrated, empty warehouse (SQLite file or the session's Postgres database), set as the default."""
    url = _fresh_warehouse(request.param, request, tmp_path, sqlite_template)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    return url


@pytest.fixture(
    params=[
        "sql-sqlite",
        pytest.param("sql-postgres", marks=pytest.mark.postgres),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def warehouse(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The warehouse of the test's backend: where its dead letters land (RabbitMQ: drained into SQLite)."""
    url = _fresh_warehouse(
        "postgres" if backend == "sql-postgres" else "sqlite", request, tmp_path, sqlite_template
    )
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    return url


@pytest.fixture
def make_queue(
    backend: str, warehouse: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Queue]]:
    """Build queues of the test's backend that share one isolated queue (name or prefix)."""
    name = f"t{uuid.uuid4().hex[:12]}"
    created: list[Queue] = []
    amqp = request.getfixturevalue("amqp_url") if backend == "rabbitmq" else None

    def make(max_attempts: int = 3, **options: Any) -> Queue:
        q: Queue
        if amqp is None:
            q = SqlQueue(warehouse, name=name, max_attempts=max_attempts, dead_letter_sink=SINK, **options)
        else:
            q = RabbitMQQueue(
                amqp_queue_url(amqp, name, max_attempts=max_attempts, **options),
                warehouse_url=warehouse,
                dead_letter_sink=SINK,
            )
        created.append(q)
        return q

    yield make
    for q in created:
        q.close()
    if amqp is not None:
        RabbitMQQueue(amqp_queue_url(amqp, name, max_attempts=3)).delete_topology()


@pytest.fixture
def rabbit(
    amqp_url: str, tmp_path: Path, sqlite_template: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RabbitMQQueue]]:
    """RabbitMQ queues on a per-test prefix, with a migrated SQLite warehouse for the DLQ drain."""
    warehouse = _fresh_warehouse("sqlite", request, tmp_path, sqlite_template)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    created: list[RabbitMQQueue] = []

    def make(base: str | None = None, **options: Any) -> RabbitMQQueue:
        options.setdefault("max_attempts", 3)
        q = RabbitMQQueue(
            amqp_queue_url(base or amqp_url, prefix, **options),
            warehouse_url=warehouse,
            dead_letter_sink=SINK,
        )
        created.append(q)
        return q

    make.warehouse_url = warehouse  # type: ignore[attr-defined]
    yield make
    for q in created:
        q.close()
    RabbitMQQueue(amqp_queue_url(amqp_url, prefix, max_attempts=3)).delete_topology()


@pytest.fixture
def amqp_proxy(amqp_url: str) -> Iterator[TcpProxy]:
    proxy = TcpProxy(("127.0.0.1", 5672))
    yield proxy
    proxy.close()


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
