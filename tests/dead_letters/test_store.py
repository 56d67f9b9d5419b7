"""The one writer of dead letters: rows, files and events (the queue's records, as the sink gets them) share
one upsert and one status rule."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from integration_assets.dead_letters import queries, store
from integration_assets.queue import QueueDeadLetter
from integration_assets.warehouse.schema import dead_letters


def _row(fp: str, reason: str = "bad") -> dict:
    return {
        "fingerprint": fp,
        "source_system": "hubspot",
        "entity": "contacts",
        "stage": "map",
        "check_name": "unknown_value",
        "reason": reason,
        "raw_record": '{"a": 1}',
    }


def _event(message_id: str, reason: str, attempts: int) -> QueueDeadLetter:
    return QueueDeadLetter(
        source="stripe",
        message_id=message_id,
        event_type="payment_intent.succeeded",
        body=b'{"id": "evt_1", "note": "\x00"}',
        headers={"content-type": "application/json"},
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        reason=reason,
        check_name="max_attempts",
        attempts=attempts,
        details={"queue": "events"},
    )


def _get(conn: sa.Connection, fp: str) -> dict:
    return dict(
        conn.execute(sa.select(dead_letters).where(dead_letters.c.fingerprint == fp)).mappings().one()
    )


def test_statuses_are_the_literal() -> None:
    assert queries.STATUSES == ("pending", "replayed", "discarded")
    assert queries.status_of("") is None and queries.status_of("replayed") == "replayed"


def test_one_status_rule_for_rows_and_events(engine: sa.Engine) -> None:
    fp_event = store.event_fingerprint("stripe", "stripe:evt_1")
    with engine.begin() as conn:
        store.write_row_dead_letters(conn, [_row("r1"), _row("r2")])
        store.write_event_dead_letters(conn, [_event("stripe:evt_1", "first", 3)])
        ids = {fp: _get(conn, fp)["id"] for fp in ("r1", "r2", fp_event)}
        store.mark_replayed(conn, [ids["r1"], ids[fp_event]], "replayed by test", count_attempt=False)
        store.discard(conn, [ids["r2"]], "not needed", who="test")
    with engine.begin() as conn:  # all three fail again
        store.write_row_dead_letters(conn, [_row("r1", "again"), _row("r2", "again")])
        store.write_event_dead_letters(conn, [_event("stripe:evt_1", "second", 2)])
        r1, r2, ev = _get(conn, "r1"), _get(conn, "r2"), _get(conn, fp_event)
    assert (r1["status"], r1["attempts"], r1["reason"]) == ("pending", 2, "again")  # replayed -> pending
    assert (r2["status"], r2["attempts"]) == ("discarded", 2)  # discarded stays discarded
    assert (ev["status"], ev["attempts"], ev["reason"]) == ("pending", 5, "second")  # attempts add up
    assert ev["stage"] == "event" and ev["natural_key"] == "stripe:evt_1"
    assert "\x00" not in ev["raw_record"] and "\\u0000" in ev["raw_record"]
    assert r1["last_seen"] >= r1["first_seen"]


def test_replay_transitions_are_audited_by_the_caller(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        store.write_row_dead_letters(conn, [_row("r1")])
        dl_id = _get(conn, "r1")["id"]
        store.mark_still_failing(conn, dl_id, "still bad")
        row = _get(conn, "r1")
        assert (row["status"], row["attempts"], row["reason"]) == ("pending", 2, "still bad")
        store.mark_replayed(conn, [dl_id], "done", load_id="ld_1")
        row = _get(conn, "r1")
        assert (row["status"], row["attempts"], row["load_id"]) == ("replayed", 3, "ld_1")
        store.mark_replayed(conn, [dl_id], "again", only_pending=True)  # not pending any more: unchanged
        assert _get(conn, "r1")["resolution_note"] == "done"


def test_erase_payload_discards_and_drops_the_record(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        store.write_row_dead_letters(conn, [_row("r1")])
        dl_id = _get(conn, "r1")["id"]
        assert store.erase_payload(conn, dl_id, source_id="42", note="GDPR erasure")
        row = dict(conn.execute(sa.select(dead_letters).where(dead_letters.c.id == dl_id)).mappings().one())
        assert not store.erase_payload(conn, dl_id + 1000, source_id="42", note="x")
    assert row["status"] == "discarded" and row["fingerprint"] != "r1" and '"a"' not in row["raw_record"]
