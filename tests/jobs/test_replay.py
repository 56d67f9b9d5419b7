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
from integration_assets.warehouse.db import get_engine
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


def test_the_launchpad_default_is_a_dry_run_that_lists_each_record() -> None:
    """The replay job run with no config (the launchpad's pre-filled default) changes nothing and shows one
    row per record: its key, what would happen, and why it would still fail."""
    import dagster as dg

    from integration_assets.definitions import defs
    from tests.checks.support import drop, ingest

    job = defs.resolve_job_def("replay_dead_letters")
    with dg.instance_for_test() as instance:
        assert ingest(defs, instance, [drop()]).success  # quarantines 2 contacts (bad e-mail, unknown stage)
        res = job.execute_in_process(instance=instance)
        assert not res.get_asset_materialization_events()
    [output] = [e for e in res.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["dry_run"].value is True
    rows = [r.data for r in metadata["records"].value.records]
    assert sorted(r["key"] for r in rows) == ["103", "104"]
    assert {r["outcome"] for r in rows} == {"would still fail"}
    assert all(r["reason"] and r["source"] == "hubspot/contacts" for r in rows)
    with get_engine(get_settings().warehouse_url).connect() as conn:
        assert set(conn.execute(sa.select(dead_letters.c.status)).scalars()) == {"pending"}
