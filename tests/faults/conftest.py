"""Fault-injection suite: fixtures, the per-scenario report and the session-end table.

Each scenario computes its figures with ``tests.faults.accounting`` and hands them to ``record``, which
stores them and asserts lost = 0 and duplicates = 0. At the end of the session the figures are written to
``report.json`` and ``report.md`` in ``$FAULTS_REPORT_DIR`` (default: ``faults/`` under pytest's base temp
dir) and printed as a table; docs/RELIABILITY.md's table comes from there.

Servers that a scenario stops or kills are started here, once per session, on their own ports: a
PostgreSQL cluster and a RabbitMQ node (tests/support/servers.py). The shared services are never stopped.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.events.conftest import stack  # noqa: F401 - the event-path stacks, reused as they are
from tests.faults.accounting import Figures
from tests.support.servers import OwnPostgres, OwnRabbitMQ, ServerError
from tests.support.tcp_proxy import TcpProxy

_RESULTS: list[dict[str, Any]] = []
_OUTCOMES: dict[str, str] = {}
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith("tests/faults/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "xfail" if hasattr(report, "wasxfail") else report.outcome
        _OUTCOMES[report.nodeid] = outcome


def _report_dir(config: pytest.Config) -> Path:
    configured = os.environ.get("FAULTS_REPORT_DIR")
    if configured:
        return Path(configured)
    factory = getattr(config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else Path(".data")
    return Path(base) / "faults"


def _rows() -> list[dict[str, Any]]:
    rows = []
    for r in _RESULTS:
        rows.append({**r, "outcome": _OUTCOMES.get(r["test"], "?")})
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = "| scenario | backend | sent | applied | duplicates | dead-lettered | lost | seconds | result |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['backend'] or '-'} | {r['sent']} | {r['applied']} | {r['duplicates']} | "
            f"{r['dead_lettered']} | {r['lost']} | {r['seconds']:.1f} | {r['outcome']} |"
        )
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RESULTS:
        return
    out = _report_dir(session.config)
    out.mkdir(parents=True, exist_ok=True)
    rows = _rows()
    (out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(rows))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _RESULTS:
        return
    terminalreporter.section("fault scenarios")
    for line in _markdown(_rows()).splitlines():
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"(written to {_report_dir(config) / 'report.json'} and report.md)")


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., Figures]:
    """``record(figures)``: store a scenario's figures (with its duration) and assert lost = 0 and
    duplicates = 0. Extra keyword checks: ``dead_lettered=<n>`` and ``applied=<n>`` when the scenario knows
    them exactly."""
    t0 = time.monotonic()

    def rec(fig: Figures, **expected: int) -> Figures:
        fig.seconds = round(time.monotonic() - t0, 2)
        _RESULTS.append({**fig.as_dict(), "test": request.node.nodeid})
        print(f"\n{fig.scenario} [{fig.backend}]: {fig.as_dict()}")
        assert fig.lost == 0, f"lost {fig.lost}: {fig}"
        assert fig.duplicates == 0, f"duplicates {fig.duplicates}: {fig}"
        assert fig.applied + fig.dead_lettered == fig.sent, fig
        for name, value in expected.items():
            assert getattr(fig, name) == value, f"{name}: {getattr(fig, name)} != {value}: {fig}"
        return fig

    return rec


@pytest.fixture
def pg_proxy() -> Iterator[TcpProxy]:
    """A TCP proxy of this test in front of the shared PostgreSQL: a scenario takes the warehouse away by
    cutting and refusing connections (``down()``), never by stopping the server."""
    proxy = TcpProxy(("127.0.0.1", 5432))
    yield proxy
    proxy.close()


# -- servers of our own ------------------------------------------------------------------------------------
def _unavailable(msg: str) -> None:
    """As for the shared services: a failure in CI, a skip with the reason elsewhere (a laptop without
    PostgreSQL 15 or RabbitMQ installed)."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL 15 cluster of this session, on a free port: a scenario may stop it (even -m immediate)
    and start it again."""
    try:
        pg = OwnPostgres()
        pg.start()
    except ServerError as exc:
        _unavailable(f"cannot start a PostgreSQL cluster of our own: {exc}")
    yield pg
    pg.close()


@pytest.fixture
def own_pg_url(own_postgres: OwnPostgres) -> str:
    """A fresh, migrated warehouse database on the session's own cluster (started if a test left it down)."""
    from integration_assets.warehouse import db

    if own_postgres.pid is None:
        own_postgres.start()
    url = own_postgres.create_database(f"faults_{uuid.uuid4().hex[:10]}")
    db.upgrade(url)
    return url


@pytest.fixture(scope="session")
def own_rabbitmq() -> Iterator[OwnRabbitMQ]:
    """A RabbitMQ node of this session (its own ports and data): a scenario may kill -9 and restart it."""
    node = OwnRabbitMQ()
    try:
        node.start()
    except ServerError as exc:
        node.close()
        _unavailable(f"cannot start a RabbitMQ node of our own: {exc}")
    yield node
    node.close()
