"""``replay_dead_letters`` (and so ``dlq replay``) replays event dead letters too: back on the queue, same id."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa

from integration_assets.dead_letters import queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.jobs.replay import replay_all
from integration_assets.queue import QueueDeadLetter
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import dead_letters, event_queue


def _event(message_id: str) -> QueueDeadLetter:
    return QueueDeadLetter(
        source="stripe",
        message_id=message_id,
        event_type="payment_intent.succeeded",
        body=b'{"id": "evt_1", "type": "payment_intent.succeeded"}',
        headers={},
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        reason="gave up",
        check_name="max_attempts",
        attempts=5,
        details={},
    )


def _replay(engine: sa.Engine, flt: Filter, dry_run: bool = False):  # type: ignore[no-untyped-def]
    return replay_all(
        flt,
        contract_id=None,
        dry_run=dry_run,
        who="test",
        run_id=None,
        settings=get_settings(),
        engine=engine,
    )


def test_event_dead_letters_go_back_on_the_queue(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        store.write_event_dead_letters(conn, [_event("stripe:evt_1")])
    [dl_id] = [r["id"] for r in queries.select(engine.connect(), Filter())]

    dry = _replay(engine, Filter(ids=(dl_id,)), dry_run=True)
    assert dry.replayed == [dl_id] and not dry.skipped

    out = _replay(engine, Filter())
    assert out.selected == 1 and out.replayed == [dl_id] and not out.skipped and not out.still_failing
    with engine.connect() as conn:
        assert conn.execute(sa.select(dead_letters.c.status)).scalar_one() == "replayed"
        assert conn.execute(sa.select(event_queue.c.message_id)).scalars().all() == ["stripe:evt_1"]

    again = _replay(engine, Filter(status=None))
    assert again.replayed == [] and again.skipped == {dl_id: "status is replayed"}


def test_a_filter_on_another_stage_leaves_events_alone(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        store.write_event_dead_letters(conn, [_event("stripe:evt_2")])
    out = _replay(engine, Filter(stage="map"))
    assert out.selected == 0 and out.replayed == []


def test_dlq_replay_serves_event_dead_letters(engine: sa.Engine) -> None:
    from click.testing import CliRunner

    from integration_assets.cli import main

    with engine.begin() as conn:
        store.write_event_dead_letters(conn, [_event("stripe:evt_3")])
    res = CliRunner().invoke(main, ["dlq", "replay", "--filter", "--stage", "event", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["selected"], out["replayed"], out["skipped"]) == (1, 1, 0)
    with engine.connect() as conn:
        assert conn.execute(sa.select(event_queue.c.message_id)).scalars().all() == ["stripe:evt_3"]
