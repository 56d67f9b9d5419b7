"""What an alert sensor's tick says in the UI. Dagster 1.13 shows a tick that requests no run as "Skipped",
so the tick's reason says what the sensor did itself: alerts opened or resolved, or that nothing was new."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from integration_assets.ingest.load import ingest_file
from integration_assets.policies import load_policies
from integration_assets.sensors.alerts import build_alert_sensors, tick_message
from integration_assets.warehouse.db import ensure_schema

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def test_tick_message_counts_what_was_done() -> None:
    assert tick_message([], "the freshness of 3 assets") == (
        "Checked the freshness of 3 assets: nothing new to alert or resolve (no run needed)."
    )
    text = tick_message(["opened check:a:drift", "opened check:b:keys", "resolved check:c:volume"], "x")
    assert text.startswith("Alerts handled by the sensor itself, no run needed: 2 opened, 1 resolved. ")
    assert text.endswith("opened check:a:drift; opened check:b:keys; resolved check:c:volume")


def test_a_tick_that_opens_an_alert_says_so(warehouse_url: str) -> None:
    [sensor] = [
        s for s in build_alert_sensors([], [], load_policies()) if s.name == "dead_letter_growth_alerts"
    ]
    ensure_schema(warehouse_url)  # a tick never migrates: it skips until the schema is at head
    with dg.instance_for_test() as instance:
        quiet = sensor(dg.build_sensor_context(instance=instance))
        assert "nothing new to alert" in str(quiet.skip_reason.skip_message)
        ingest_file(FIXTURE, "hubspot", "contacts")  # 2 rows quarantined
        busy = sensor(dg.build_sensor_context(instance=instance, cursor=quiet.cursor))
    assert busy.run_requests == []
    assert busy.skip_reason.skip_message == (
        "Alerts handled by the sensor itself, no run needed: 1 opened. opened dead_letters:hubspot/contacts"
    )
