"""The alert sensors, evaluated through their cursors against a real instance, warehouse and JSON-lines channel.

The key story (a source stops): a freshness window of 1 minute, the FreshnessDaemon's own evaluation code
run at 30 s ticks on a frozen Dagster clock, the freshness sensor after each daemon tick. Exactly one alert
reaches the channel within one window plus one sensor interval; a new file resolves it.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.test_utils import freeze_time

from integration_assets.checks import dagster_internals
from integration_assets.dead_letters import queries, store
from integration_assets.ingest.load import ingest_file
from integration_assets.policies import DEFAULT_POLICIES_FILE
from integration_assets.quality.connector_health import record_http_status
from integration_assets.sensors.alerts import NOT_MIGRATED
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import contacts
from tests.checks import support
from tests.checks.support import FIXTURE, check_key, drop, ingest, run_checks
from tests.quality.factories import T0

ENTITY_TAG = "integration/entity"


def alert_lines() -> list[dict]:
    path = get_settings().data_dir / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sensor(defs: dg.Definitions, name: str) -> dg.SensorDefinition:
    return defs.resolve_sensor_def(name)


def tick(
    defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult:
    return sensor(defs, name)(dg.build_sensor_context(instance=instance, cursor=cursor))


@pytest.fixture
def defs() -> dg.Definitions:
    from integration_assets.definitions import defs

    return defs


def _duplicate_contacts(url: str) -> None:
    with get_engine(url).begin() as conn:
        for i in ("1", "2"):
            conn.execute(
                contacts.insert().values(
                    source_system="hubspot",
                    source_id=i,
                    source_updated_at=T0,
                    mapping_version="hubspot.contacts.csv@v1",
                    load_id="ld_x",
                    row_hash=int(i),
                    email="ann.lee@example.com",
                )
            )


# -- (a) failed checks --------------------------------------------------------------------------------------


def test_failed_check_alerts_once_then_resolves(warehouse_url: str, defs: dg.Definitions) -> None:
    keys = check_key("contacts", "keys")
    _duplicate_contacts(warehouse_url)
    with dg.instance_for_test() as instance:
        assert not run_checks(defs, instance, [keys]).get_asset_check_evaluations()[0].passed
        first = tick(defs, "asset_check_alerts", instance)
        [fired] = alert_lines()
        assert (fired["kind"], fired["key"], fired["severity"]) == (
            "fire",
            "check:warehouse/contacts:keys",
            "error",
        )
        assert fired["title"] == "Check keys failed on warehouse/contacts (ERROR)"
        assert (fired["source_system"], fired["entity"], fired["check_name"]) == (
            "hubspot",
            "contacts",
            "keys",
        )
        assert "duplicate email" in fired["summary"] and fired["runbook"]
        assert fired["details"]["rows"] == 2 and fired["details"]["unique_keys"] == ["source_id", "email"]
        assert fired["details"]["duplicates"] == {
            "email": "[REDACTED]"
        }  # a key named like PII is masked anyway
        assert "ann.lee@example.com" not in json.dumps(fired)

        # The same evaluation on the next tick, and another failing evaluation: still one alert.
        again = tick(defs, "asset_check_alerts", instance, first.cursor)
        run_checks(defs, instance, [keys])
        again = tick(defs, "asset_check_alerts", instance, again.cursor)
        assert len(alert_lines()) == 1

        with get_engine(warehouse_url).begin() as conn:
            conn.execute(contacts.delete().where(contacts.c.source_id == "2"))
        assert run_checks(defs, instance, [keys]).get_asset_check_evaluations()[0].passed
        tick(defs, "asset_check_alerts", instance, again.cursor)
    fire, resolve = alert_lines()
    assert (resolve["kind"], resolve["key"], resolve["episode"]) == ("resolve", fire["key"], 1)
    assert "passes again" in resolve["summary"]


@pytest.mark.usefixtures("warehouse_url")
def test_a_skipped_check_raises_no_alert(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance:
        run_checks(defs, instance, [check_key("invoices", "reconcile_invoices_payments")])
        [state] = dagster_internals.latest_check_states(
            instance, [check_key("invoices", "reconcile_invoices_payments")]
        ).values()
        assert state.status == "skipped"
        tick(defs, "asset_check_alerts", instance)
    assert alert_lines() == []


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_check_that_cannot_run_alerts_as_an_error(warehouse_url: str, defs: dg.Definitions) -> None:
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.text("ALTER TABLE contacts RENAME TO contacts_moved"))  # the check's query now fails
    with dg.instance_for_test() as instance:
        assert not run_checks(defs, instance, [check_key("contacts", "keys")]).success
        tick(defs, "asset_check_alerts", instance)
    [fired] = alert_lines()
    assert (fired["key"], fired["severity"]) == ("check:warehouse/contacts:keys", "error")
    assert (
        fired["title"] == "Check keys could not run on warehouse/contacts"
        and "unverified" in fired["summary"]
    )


# -- (b) failed runs ----------------------------------------------------------------------------------------


class Toggle(dg.Config):
    fail: bool = True


@dg.op
def export_step(config: Toggle) -> None:
    if config.fail:
        raise RuntimeError("export endpoint returned HTTP 503")


@dg.job(name="ingest_hubspot_contacts", tags={ENTITY_TAG: "hubspot.contacts"})
def flaky_job() -> None:
    export_step()


@pytest.mark.usefixtures("warehouse_url")
def test_failed_run_alerts_and_the_next_success_resolves(defs: dg.Definitions) -> None:
    failure, recovery = sensor(defs, "run_failure_alerts"), sensor(defs, "run_recovery_alerts")
    with dg.instance_for_test() as instance:
        bad = flaky_job.execute_in_process(instance=instance, raise_on_error=False)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alerts",
            dagster_instance=instance,
            dagster_run=bad.dagster_run,
            dagster_event=bad.get_run_failure_event(),
        ).for_run_failure()
        failure(ctx)
        [fired] = alert_lines()
        assert (fired["key"], fired["severity"], fired["title"]) == (
            "run:ingest_hubspot_contacts",
            "error",
            "Run of ingest_hubspot_contacts failed",
        )
        assert (
            fired["details"]["failed_steps"] == ["export_step"] and fired["details"]["run_id"] == bad.run_id
        )
        assert (fired["source_system"], fired["entity"]) == ("hubspot", "contacts") and fired["runbook"]

        good = flaky_job.execute_in_process(
            instance=instance, run_config={"ops": {"export_step": {"config": {"fail": False}}}}
        )
        recovery(
            dg.build_run_status_sensor_context(
                sensor_name="run_recovery_alerts",
                dagster_instance=instance,
                dagster_run=good.dagster_run,
                dagster_event=good.get_run_success_event()
                if hasattr(good, "get_run_success_event")
                else next(e for e in good.all_events if e.event_type_value == "PIPELINE_SUCCESS"),
            )
        )
    assert [(a["kind"], a["key"]) for a in alert_lines()] == [
        ("fire", "run:ingest_hubspot_contacts"),
        ("resolve", "run:ingest_hubspot_contacts"),
    ]


# -- (c) freshness: a source stops --------------------------------------------------------------------------


@pytest.fixture
def one_minute_hubspot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.Definitions]:
    """The code location with HubSpot's freshness window at Dagster's minimum: fail after 1 minute, no warn."""
    policies = yaml.safe_load(DEFAULT_POLICIES_FILE.read_text())
    policies["sources"]["hubspot"]["freshness"] = {"fail": "1m"}
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(policies))
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(path))
    from integration_assets.definitions import build_definitions

    support.LOCATION = build_definitions()
    yield support.LOCATION
    support.LOCATION = None


def _changed_copy(tmp_path: Path) -> Path:
    """The same export a day later: one contact modified, so new content that really loads."""
    text = FIXTURE.read_text()
    assert text.count('"2024-02-05 10:00"') == 1
    text = text.replace('"2024-02-05 10:00"', '"2024-02-06 10:00"')
    out = tmp_path / "contacts-next.csv"
    out.write_text(text)
    return out


# The freshness path lives in the Dagster instance; the warehouse side of alerting (incidents, deliveries) is
# covered on both databases by the other tests, so this longer story runs once, on SQLite.
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.usefixtures("warehouse_url")
def test_source_stops_one_alert_within_window_plus_interval_then_resolves(
    one_minute_hubspot: dg.Definitions, tmp_path: Path
) -> None:
    defs = one_minute_hubspot
    freshness = sensor(defs, "freshness_alerts")
    interval = timedelta(seconds=freshness.minimum_interval_seconds or 30)
    window = timedelta(minutes=1)
    assert interval == timedelta(seconds=30)
    assert (
        defs.resolve_asset_graph()
        .get(dg.AssetKey(["warehouse", "contacts"]))
        .freshness_policy.fail_window.to_timedelta()
        == window
    )
    t0 = datetime.now(UTC).replace(microsecond=0)

    def stale_alerts() -> list[dict]:
        return [a for a in alert_lines() if a["key"] == "freshness:hubspot/contacts:fail"]

    with (
        dg.instance_for_test() as instance,
        dagster_internals.in_process_workspace(instance, "tests.checks.support", "LOCATION") as workspace,
    ):
        with freeze_time(t0):  # the source delivers one export
            assert ingest(defs, instance, [drop()]).success
        last_data = dagster_internals.last_materialization_time(
            instance, dg.AssetKey(["warehouse", "contacts"])
        )
        assert last_data is not None and abs((last_data - t0).total_seconds()) < 1

        # ... and then nothing. Daemon and sensor tick every 30 s (the daemon first, as in dagster-daemon).
        fired_at = None
        for step in range(7):
            now = t0 + step * interval
            with freeze_time(now):
                dagster_internals.run_freshness_daemon_once(workspace)
                freshness(dg.build_sensor_context(instance=instance))
            if stale_alerts() and fired_at is None:
                fired_at = now
        [alert] = stale_alerts()  # exactly one, however many ticks stay stale
        assert fired_at is not None and fired_at - last_data <= window + interval
        assert datetime.fromisoformat(alert["at"]) == fired_at
        assert (
            alert["severity"] == "error"
            and alert["source_system"] == "hubspot"
            and alert["entity"] == "contacts"
        )
        assert alert["details"]["assets"] == ["raw/hubspot/contacts", "warehouse/contacts"]
        assert "no new data for more than 1m" in alert["title"] and "hubspot/contacts/" in alert["runbook"]

        # The source resumes: a new export arrives, the next daemon tick sees PASS, the sensor resolves.
        resume = t0 + 8 * interval
        with freeze_time(resume):
            resumed = ingest(defs, instance, [drop("contacts-next.csv", _changed_copy(tmp_path))])
        assert resumed.success
        [mat] = resumed.asset_materializations_for_node("warehouse__contacts")
        assert mat.metadata["rows_updated"].value == 1  # real new data, not a duplicate file
        with freeze_time(resume + interval):  # (one more minute and the 1-minute window would fail again)
            dagster_internals.run_freshness_daemon_once(workspace)
            freshness(dg.build_sensor_context(instance=instance))
    notices = [(a["kind"], a["key"]) for a in alert_lines()]
    assert notices == [
        ("fire", "freshness:hubspot/contacts:fail"),
        ("resolve", "freshness:hubspot/contacts:fail"),
    ]
    assert datetime.fromisoformat(alert_lines()[1]["at"]) == resume + interval


# -- (d) dead-letter growth ---------------------------------------------------------------------------------


def test_dead_letter_growth_alerts_and_resolves_when_the_queue_is_empty(
    warehouse_url: str, defs: dg.Definitions
) -> None:
    with dg.instance_for_test() as instance:
        assert tick(defs, "dead_letter_growth_alerts", instance).cursor is None
        assert alert_lines() == []
        ingest_file(FIXTURE, "hubspot", "contacts")  # 2 rows quarantined
        first = tick(defs, "dead_letter_growth_alerts", instance)
        [fired] = alert_lines()
        assert (fired["key"], fired["severity"]) == ("dead_letters:hubspot/contacts", "warning")
        assert fired["details"]["new"] == 2 and fired["details"]["pending"] == 2
        assert "dlq list --source hubspot --entity contacts" in fired["runbook"]
        assert "not-an-email" not in json.dumps(fired)  # the offending values stay in the queue

        second = tick(defs, "dead_letter_growth_alerts", instance, first.cursor)
        assert len(alert_lines()) == 1
        with get_engine(warehouse_url).begin() as conn:
            ids = [r["id"] for r in queries.select(conn, queries.Filter())]
            store.discard(conn, ids, note="test data", who="tester")
        tick(defs, "dead_letter_growth_alerts", instance, second.cursor)
    assert [a["kind"] for a in alert_lines()] == ["fire", "resolve"]


# -- (e) sustained connector 429/5xx ------------------------------------------------------------------------


def test_sustained_http_errors_alert_and_resolve(warehouse_url: str, defs: dg.Definitions) -> None:
    engine = get_engine(warehouse_url)
    now = T0 + timedelta(minutes=10)
    for minute in (1, 2, 3, 4):
        record_http_status("hubspot", 429, engine=engine, at=now - timedelta(minutes=minute), count=4)
    record_http_status("hubspot", 200, engine=engine, at=now - timedelta(minutes=1), count=2)
    with dg.instance_for_test() as instance:
        with freeze_time(now):
            tick(defs, "connector_http_error_alerts", instance)
            tick(defs, "connector_http_error_alerts", instance)
        [fired] = alert_lines()
        assert fired["key"] == "http:hubspot" and fired["details"]["by_class"] == {"2xx": 2, "429": 16}
        later = now + timedelta(minutes=15)
        record_http_status("hubspot", 200, engine=engine, at=later - timedelta(minutes=1), count=30)
        with freeze_time(later):
            tick(defs, "connector_http_error_alerts", instance)
    assert [a["kind"] for a in alert_lines()] == ["fire", "resolve"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM connector_http_stats")).scalar_one() == 6


# -- a tick never migrates ----------------------------------------------------------------------------------


def test_alert_sensors_skip_until_the_warehouse_is_migrated(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, defs: dg.Definitions
) -> None:
    url = f"sqlite:///{isolated_env / 'new.db'}"
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", url)
    names = [
        "asset_check_alerts",
        "freshness_alerts",
        "dead_letter_growth_alerts",
        "connector_http_error_alerts",
    ]
    with dg.instance_for_test() as instance:
        results = [tick(defs, name, instance, "kept") for name in names]
    assert {r.skip_reason.skip_message for r in results if r.skip_reason} == {NOT_MIGRATED}
    assert len(results) == 4 and all(r.cursor is None for r in results)
    with get_engine(url).connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # nothing was created
