"""Fixtures of the outbound framework tests: won deals merged through the real writer, a trivial step."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from integration_assets.outbound import runner
from integration_assets.outbound.steps.base import OutboxMessage, StepContext, StepResult
from integration_assets.warehouse.db import claim_writer
from integration_assets.warehouse.writer import CanonicalStage

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# Close dates of the test deals: recent, so a deal first seen already won starts its chain
# (policy outbound.first_seen_won_within).
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite warehouse, copied per test: far cheaper than running the migrations every time."""
    from integration_assets.warehouse import db

    path = tmp_path_factory.mktemp("outbound_template") / "warehouse.db"
    db.upgrade(f"sqlite:///{path}")
    db._engine.cache_clear()  # release the file before it is copied
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(
    request: pytest.FixtureRequest, isolated_env: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """As tests/conftest.py's, with the SQLite warehouse copied from a migrated template."""
    if request.param == "sqlite":
        path = isolated_env / "warehouse.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        from tests.conftest import _truncate_all

        url = request.getfixturevalue("pg_database")
        _truncate_all(url)
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    return url


def deal_frame(deals: list[dict[str, Any]], load_id: str) -> pd.DataFrame:
    """Mapped HubSpot deal rows, as the mapper hands them to the writer."""
    rows = []
    for i, d in enumerate(deals):
        rows.append(
            {
                "source_system": "hubspot",
                "source_id": str(d["id"]),
                "source_updated_at": d.get("at", T0),
                "mapping_version": "test.deals@v1",
                "load_id": load_id,
                "name": f"Deal {d['id']}",
                "stage": "closedwon" if d.get("won", True) else "appointmentscheduled",
                "pipeline": "default",
                "amount": d.get("amount", 100.0),
                "close_date": d.get("close_date", RECENT),
                "company_id": "c1",
                "is_closed_won": d.get("won", True),
                "created_at": T0,
                "archived_at": None,
                "_pos": i,
            }
        )
    frame = pd.DataFrame(rows)
    frame["source_updated_at"] = pd.to_datetime(frame["source_updated_at"], utc=True)
    for c in ("close_date", "created_at", "archived_at"):
        frame[c] = pd.to_datetime(frame[c], utc=True)
    frame["is_closed_won"] = frame["is_closed_won"].astype("boolean")
    return frame


def merge_deals(engine: sa.Engine, deals: list[dict[str, Any]], load_id: str = "ld_1") -> None:
    """Merge HubSpot deals through ``CanonicalStage`` (the path every load, event and replay takes)."""
    with engine.begin() as conn:
        stage_deals(conn, deals, load_id)


def stage_deals(conn: sa.Connection, deals: list[dict[str, Any]], load_id: str = "ld_1") -> None:
    """Stage and merge ``deals`` inside the caller's transaction."""
    claim_writer(conn)
    stage = CanonicalStage(conn, "deals")
    stage.add(deal_frame(deals, load_id), load_id)
    stage.merge()


@dataclass
class EchoStep:
    """A trivial step for the framework tests: "creates" one object per chain in an in-memory target,
    looks it up first when asked to, and can be told to fail."""

    name: str = "odoo_order"
    target: str = "odoo"
    created: dict[str, int] = field(default_factory=dict)  # chain -> how many creates reached the target
    calls: list[tuple[str, int, bool]] = field(default_factory=list)  # (chain, attempt, looked up first)
    seen: list[tuple[str, str, str, Any]] = field(default_factory=list)  # (chain, topic, key, payload n)
    # chain -> errors to raise, in order (or callables making them: called at the moment of the failure)
    fail: dict[str, list[Any]] = field(default_factory=dict)
    follow_up: str | None = None
    pause_s: float = 0.0  # time each call spends "in the target"
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult:
        key = ctx.ledger_key(self.name, msg.chain_id)
        lookup = attempt > 1 or ctx.previously_started(key)
        if self.pause_s:
            with self.lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            time.sleep(self.pause_s)
            with self.lock:
                self.in_flight -= 1
        with self.lock:
            self.calls.append((msg.chain_id, attempt, lookup))
            self.seen.append((msg.chain_id, msg.topic, msg.key, msg.payload.get("n")))
            errors = self.fail.get(msg.chain_id)
            if errors:
                error = errors.pop(0)
                raise error() if callable(error) and not isinstance(error, BaseException) else error
        if ctx.dry_run:
            return StepResult("sent", preview=[{"client_order_ref": f"hubspot-deal:{msg.chain_id}"}])
        with self.lock:
            if lookup and self.created.get(msg.chain_id):
                return StepResult("found", target_id=f"o{msg.chain_id}", chain_updates={"status": "ordered"})
            self.created[msg.chain_id] = self.created.get(msg.chain_id, 0) + 1
        follow = []
        if self.follow_up:
            follow = [
                (
                    "order.confirmed",
                    self.follow_up,
                    f"order.confirmed:{msg.chain_id}",
                    {"deal_id": msg.chain_id},
                )
            ]
        return StepResult(
            "sent",
            target_id=f"o{msg.chain_id}",
            chain_updates={"status": "ordered", "order_id": f"o{msg.chain_id}", "amount_at_order": 100},
            follow_ups=follow,
            contract_version="test/order@v1",
        )


@pytest.fixture
def echo() -> Iterator[EchoStep]:
    step = EchoStep()
    runner.register_step(step)
    yield step
    runner.unregister_step(step.name)


def merge_rows(engine: sa.Engine, table: str, rows: list[dict[str, Any]], load_id: str = "ld_rows") -> None:
    """Merge canonical rows of any table through ``CanonicalStage``; unset columns are null, timestamps
    default to ``T0``."""
    from integration_assets.warehouse.schema import CANONICAL_TABLES

    t = CANONICAL_TABLES[table]
    full = []
    for i, r in enumerate(rows):
        row: dict[str, Any] = {c.name: None for c in t.columns if c.name != "row_hash"}
        row.update({"source_updated_at": T0, "mapping_version": f"test.{table}@v1", "load_id": load_id, **r})
        row["_pos"] = i
        full.append(row)
    frame = pd.DataFrame(full)
    for c in t.columns:
        if c.name not in frame:
            continue
        if isinstance(c.type, sa.DateTime):
            frame[c.name] = pd.to_datetime(frame[c.name], utc=True)
        elif isinstance(c.type, sa.Boolean):
            frame[c.name] = frame[c.name].astype("boolean")
        elif isinstance(c.type, sa.BigInteger | sa.Integer):
            frame[c.name] = frame[c.name].astype("Int64")
    with engine.begin() as conn:
        claim_writer(conn)
        stage = CanonicalStage(conn, table)
        stage.add(frame, load_id)
        stage.merge()
