"""Every materialization of a canonical asset carries its checks' evaluations, whichever path wrote it (file
load, event drain, dead-letter replay), and a run that loads nothing records no materialization: read back
from the instance with the UI's own rule (``AssetCheckExecutionRecord.targets_latest_materialization``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.loader import LoadingContextForTest

from integration_assets.checks import dagster_internals
from integration_assets.checks.inrun import check_keys
from integration_assets.definitions import defs
from integration_assets.providers import PROVIDERS
from integration_assets.queue.sql import SqlQueue
from integration_assets.sandbox.events import hubspot_change
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.webhooks.receive import provider_messages
from tests.assets.test_pull_partitions import D, _companies, _hubspot_asset, _materialize, hubspot_resources
from tests.checks.support import FIXTURE, drop, ingest
from tests.connectors.conftest import hubspot

__all__ = ["hubspot", "hubspot_resources"]  # fixtures

CONTACTS = dg.AssetKey(["warehouse", "contacts"])
RAW_CONTACTS = dg.AssetKey(["raw", "hubspot", "contacts"])


def _location_checks(table: str) -> set[dg.AssetCheckKey]:
    return {
        k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key.path == ["warehouse", table]
    }


def _not_tied(instance: dg.DagsterInstance, keys: set[dg.AssetCheckKey]) -> dict[str, str]:
    """The checks whose latest evaluation the UI would not show for the latest materialization, with why."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(sorted(keys, key=str))
    ctx = LoadingContextForTest(instance)
    out = {}
    for key in keys:
        rec = records.get(key)
        if rec is None:
            out[key.name] = "never evaluated"
        elif rec.status.value == "PLANNED":
            out[key.name] = "planned, not evaluated"
        elif not asyncio.run(rec.targets_latest_materialization(ctx)):
            out[key.name] = "Not Evaluated (older materialization)"
    return out


def _contact_change(queue: SqlQueue, event_id: int, contact: str, value: str) -> None:
    at = datetime.now(UTC) - timedelta(minutes=1)
    doc = [hubspot_change(event_id, contact, "firstname", value, at)]
    body = json.dumps(doc).encode()
    queue.publish_many(
        provider_messages(PROVIDERS["hubspot"], doc, body, {"content-type": "application/json"}, at)
    )


def test_in_run_checks_are_the_location_checks() -> None:
    for table in ("contacts", "sales_orders", "invoices", "payments", "sales_order_lines"):
        assert set(check_keys(table)) == _location_checks(table), table


def test_a_drain_after_a_load_leaves_every_check_evaluated_on_the_latest_materialization(
    warehouse_url: str,
) -> None:
    keys = _location_checks("contacts")
    with dg.instance_for_test() as instance:
        load = ingest(defs, instance, [drop()])
        assert load.success
        assert _not_tied(instance, keys) == {}
        _contact_change(SqlQueue(warehouse_url), 1, "101", "Annie")
        drain = defs.resolve_job_def("drain_events").execute_in_process(instance=instance)
        latest = instance.get_latest_materialization_event(CONTACTS)
        assert latest is not None and latest.run_id == drain.run_id  # the drain patched a contact
        assert _not_tied(instance, keys) == {}
        states = dagster_internals.latest_check_states(instance, sorted(keys, key=str))
        # What status and the alerts read is the evaluation the UI shows: the drain's, same outcome as the load.
        assert {s.run_id for s in states.values()} == {drain.run_id}
        assert states[dg.AssetCheckKey(CONTACTS, "quarantine_rate")].status == "failed"
        assert states[dg.AssetCheckKey(CONTACTS, "drift")].status == "failed"
        assert states[dg.AssetCheckKey(CONTACTS, "keys")].status == "passed"


def test_a_replay_leaves_every_check_evaluated_on_the_latest_materialization() -> None:
    keys = _location_checks("contacts")
    with dg.instance_for_test() as instance:
        assert ingest(defs, instance, [drop()]).success
        # The quarantined rows are replayed for real (one still fails: its e-mail is invalid).
        res = defs.resolve_job_def("replay_dead_letters").execute_in_process(
            instance=instance,
            run_config={"ops": {"replay_dead_letters_op": {"config": {"dry_run": False, "check": "drift"}}}},
        )
        summary = res.output_for_node("replay_dead_letters_op")
        latest = instance.get_latest_materialization_event(CONTACTS)
        assert latest is not None
        if summary["tables"]:
            assert latest.run_id == res.run_id
        assert _not_tied(instance, keys) == {}


def test_nothing_new_records_no_materialization_and_keeps_the_checks() -> None:
    keys = _location_checks("contacts")
    with dg.instance_for_test() as instance:
        assert ingest(defs, instance, [drop()]).success
        before = {k: instance.get_latest_materialization_event(k) for k in (CONTACTS, RAW_CONTACTS)}
        states_before = dagster_internals.latest_check_states(instance, sorted(keys, key=str))
        # Empty inbox (the UI's Materialize with no files), then the same content again (a duplicate).
        empty = ingest(defs, instance, [])
        assert empty.success
        duplicate = ingest(defs, instance, [drop("again.csv")])
        assert duplicate.success
        for run in (empty, duplicate):
            assert not run.get_asset_materialization_events()
        after = {k: instance.get_latest_materialization_event(k) for k in (CONTACTS, RAW_CONTACTS)}
        assert {k: e.run_id for k, e in after.items() if e} == {k: e.run_id for k, e in before.items() if e}
        observed = [
            e.asset_observation_data.asset_observation for e in duplicate.get_asset_observation_events()
        ]
        [raw] = [o for o in observed if o.asset_key == RAW_CONTACTS]
        assert raw.description == "checked the inbox: no new file"
        assert raw.metadata["already_loaded"].value == ["again.csv"]
        # The checks the runs planned were evaluated, not left "skipped"; same outcomes as after the load.
        assert _not_tied(instance, keys) == {}
        states = dagster_internals.latest_check_states(instance, sorted(keys, key=str))
        assert {k: s.status for k, s in states.items()} == {k: s.status for k, s in states_before.items()}
        assert "skipped" not in {s.status for s in states.values()}


def test_a_file_without_rows_is_no_new_data(tmp_path: Path) -> None:
    """A new file arrived (the raw list records it) but it held no row: the canonical asset is only
    observed, its freshness is not reset, and its planned checks still report."""
    keys = _location_checks("contacts")
    header = tmp_path / "header.csv"
    header.write_text(FIXTURE.read_text().splitlines()[0] + "\n")
    with dg.instance_for_test() as instance:
        first = ingest(defs, instance, [drop()])
        assert first.success
        run = ingest(defs, instance, [drop("empty.csv", header)])
        assert run.success
        assert {e.asset_key for e in run.get_asset_materialization_events()} == {RAW_CONTACTS}
        latest = instance.get_latest_materialization_event(CONTACTS)
        assert latest is not None and latest.run_id == first.run_id
        [obs] = [
            e.asset_observation_data.asset_observation
            for e in run.get_asset_observation_events()
            if e.asset_key == CONTACTS
        ]
        assert obs.description == "checked, nothing new loaded" and obs.metadata["rows_read"].value == 0
        assert _not_tied(instance, keys) == {}
        assert {e.check_name for e in run.get_asset_check_evaluations()} == {k.name for k in keys}


def test_a_partition_pull_leaves_every_check_evaluated_on_the_latest_materialization(
    hubspot: FakeHubSpot, hubspot_resources: dict[str, Any]
) -> None:
    """The backfill path: a day of the HubSpot companies pull writes rows and materializes warehouse/companies
    in its own run; that run evaluates every check of the table."""
    keys = _location_checks("companies")
    _companies(hubspot, [D + timedelta(hours=1), D + timedelta(hours=2)])
    with dg.instance_for_test() as instance:
        res = _materialize(_hubspot_asset(), hubspot_resources, instance, key=D.strftime("%Y-%m-%d"))
        assert res.success
        latest = instance.get_latest_materialization_event(dg.AssetKey(["warehouse", "companies"]))
        assert latest is not None and latest.run_id == res.run_id
        assert _not_tied(instance, keys) == {}
