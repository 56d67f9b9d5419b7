"""Retention of the event ledger and settled dead letters (SQLite and Postgres)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.housekeeping.retention import prune
from integration_assets.policies import (
    DEFAULT_POLICIES_FILE,
    PolicyError,
    RetentionPolicy,
    load_policies,
)
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.ledger import utcnow
from integration_assets.warehouse.schema import dead_letter_actions, dead_letters, processed_events

both_databases = pytest.mark.parametrize(
    "warehouse_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

NOW = utcnow()
POLICY = RetentionPolicy(processed_events="30d", settled_dead_letters="60d")


def _seed(engine: sa.Engine) -> None:
    def event(i: int, age_days: float) -> dict[str, object]:
        at = NOW - timedelta(days=age_days)
        return {
            "source": "stripe",
            "event_id": f"stripe:evt_{i}",
            "event_type": "payment_intent.succeeded",
            "received_at": at,
            "applied_at": at,
            "outcome": "applied",
            "batch_id": "b1",
        }

    def letter(i: int, status: str, resolved_days: float | None, seen_days: float) -> dict[str, object]:
        return {
            "fingerprint": f"f{i}",
            "source_system": "hubspot",
            "entity": "contacts",
            "stage": "map",
            "check_name": "unknown_value",
            "reason": "r",
            "raw_record": json.dumps({"email": "a@b.c"}),
            "status": status,
            "attempts": 1,
            "first_seen": NOW - timedelta(days=400),
            "last_seen": NOW - timedelta(days=seen_days),
            "resolved_at": None if resolved_days is None else NOW - timedelta(days=resolved_days),
        }

    with engine.begin() as conn:
        conn.execute(sa.insert(processed_events), [event(i, 31 + i) for i in range(5)] + [event(9, 29)])
        conn.execute(
            sa.insert(dead_letters),
            [
                letter(1, "replayed", 61, 61),  # settled long ago: goes
                letter(2, "discarded", 90, 90),  # goes
                letter(3, "pending", None, 300),  # pending: always stays, however old
                letter(4, "discarded", 61, 2),  # settled long ago but failed again two days ago: stays
                letter(5, "replayed", 10, 10),  # settled recently: stays
            ],
        )
        conn.execute(
            sa.insert(dead_letter_actions),
            [{"dead_letter_id": 1, "action": "replay", "actor": "t", "outcome": "replayed", "at": NOW}],
        )


def _left(engine: sa.Engine) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        events = sorted(conn.execute(sa.select(processed_events.c.event_id)).scalars())
        letters = sorted(conn.execute(sa.select(dead_letters.c.fingerprint)).scalars())
    return events, letters


@both_databases
def test_prune_removes_only_rows_past_their_retention(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    _seed(engine)
    dry = prune(engine, POLICY, now=NOW, dry_run=True)
    assert dry.removed == {"processed_events": 5, "dead_letters": 2}
    assert _left(engine) == ([f"stripe:evt_{i}" for i in (0, 1, 2, 3, 4, 9)], ["f1", "f2", "f3", "f4", "f5"])

    report = prune(engine, POLICY, now=NOW, batch_rows=2)  # several batches
    assert report.removed == {"processed_events": 5, "dead_letters": 2}
    assert report.retention == {"processed_events": "30d", "dead_letters": "60d"}
    assert _left(engine) == (["stripe:evt_9"], ["f3", "f4", "f5"])
    with engine.connect() as conn:  # the audit trail is kept
        assert conn.execute(sa.select(sa.func.count()).select_from(dead_letter_actions)).scalar_one() == 1
    assert prune(engine, POLICY, now=NOW).removed == {"processed_events": 0, "dead_letters": 0}


@both_databases
def test_db_prune_cli_uses_the_policy_file(warehouse_url: str) -> None:
    from integration_assets.cli import main

    engine = get_engine(warehouse_url)
    _seed(engine)
    res = CliRunner().invoke(main, ["db", "prune", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # policies.yaml: 90d for the ledger, 180d for settled dead letters
    assert out["dry_run"] and out["removed"] == {"processed_events": 0, "dead_letters": 0}
    assert out["retention"] == {"processed_events": "90d", "dead_letters": "180d"}
    assert load_policies().retention.processed_events == timedelta(days=90)


def test_retention_floors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 7d"):
        RetentionPolicy(processed_events="2d")
    with pytest.raises(ValueError, match="at least 1d"):
        RetentionPolicy(settled_dead_letters="1h")
    bad = tmp_path / "policies.yaml"
    bad.write_text(DEFAULT_POLICIES_FILE.read_text().replace("processed_events: 90d", "processed_events: 3d"))
    with pytest.raises(PolicyError, match="retention.processed_events must be at least 7d"):
        load_policies(bad)


@both_databases
def test_housekeeping_job_prunes_with_the_policy(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from integration_assets.jobs.housekeeping import housekeeping
    from integration_assets.resources import WarehouseResource

    engine = get_engine(warehouse_url)
    _seed(engine)
    short = tmp_path / "policies.yaml"
    short.write_text(
        DEFAULT_POLICIES_FILE.read_text()
        .replace("processed_events: 90d", "processed_events: 30d")
        .replace("settled_dead_letters: 180d", "settled_dead_letters: 60d")
    )
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(short))
    result = housekeeping.execute_in_process(resources={"warehouse": WarehouseResource(url=warehouse_url)})
    assert result.success
    assert result.output_for_node("prune_op")["removed"] == {"processed_events": 5, "dead_letters": 2}
    assert _left(engine) == (["stripe:evt_9"], ["f3", "f4", "f5"])
