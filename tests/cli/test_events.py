"""``integration-assets events drain|replay|status`` on the embedded default (SQLite + SQL queue)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.queue.sql import SqlQueue
from tests.events.conftest import messages_of, pi_event, tracker


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["events", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_drain_replay_status(warehouse_url: str) -> None:
    queue = SqlQueue(warehouse_url)
    poison = pi_event(9, "requires_reconfirmation")
    queue.publish_many([m for ev in (pi_event(1), pi_event(2), tracker(1), poison) for m in messages_of(ev)])

    code, out = _run("drain", "--max", "3", "--json")
    first = json.loads(out)
    assert code == 0 and first["events_in"] == 3 and first["balanced"]
    code, out = _run("drain", "--json")
    second = json.loads(out)
    assert code == 0 and second["events_in"] == 1 and second["queue_depth"] == 0
    assert first["applied"] + second["applied"] == 3 and first["dead_lettered"] + second["dead_lettered"] == 1

    code, out = _run("status", "--json")
    status = json.loads(out)
    assert status["queue"]["depth"] == 0
    assert {(r["source"], r["outcome"]): r["events"] for r in status["ledger"]} == {
        ("easypost", "applied"): 1,
        ("stripe", "applied"): 2,
    }
    assert status["dead_letters"] == [{"source": "stripe", "check": "unknown_value", "pending": 1}]

    code, out = _run("replay", "--filter", "--check", "unknown_value", "--dry-run", "--json")
    assert code == 0 and len(json.loads(out)["replayed"]) == 1 and queue.depth() == 0
    code, out = _run("replay", "--filter", "--check", "unknown_value")
    assert code == 0 and "1 re-enqueued" in out and queue.depth() == 1
    code, out = _run("drain")  # the rich table: still failing, so dead-lettered again (back to pending)
    assert code == 0 and "dead-lettered" in out
    code, out = _run("replay")
    assert code != 0 and "give dead letter IDS" in out
