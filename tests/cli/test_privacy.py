"""GDPR erasure through ``integration-assets privacy erase`` (SQLite and Postgres): a canary contact's personal
data is everywhere we keep copies (canonical row, a quarantined row's dead letter, a queued event, archived
exports in CSV / gzip JSONL / JSON, a rejected file, a drift sample, the alert log) and afterwards nowhere;
an audit row says what was erased per store; later loads keep it erased."""

from __future__ import annotations

import gzip
import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.ingest import inbox
from integration_assets.ingest.process import process
from integration_assets.observability.logging import JsonFormatter
from integration_assets.queue import Message
from integration_assets.queue.sql import SqlQueue
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import contacts, loads, privacy_erasures, schema_drift
from tests.privacy.support import (
    CANARY_EMAIL,
    CANARY_FIRST,
    CANARY_ID,
    CANARY_LAST,
    CANARY_PHONE,
    HEADER,
    canary_row,
    other_row,
    scan,
)


def drop(name: str, text: str) -> Path:
    folder = get_settings().inbox_dir / "hubspot" / "contacts"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sync() -> list[str]:
    """Load what waits in the inbox (the sync path without Dagster); the statuses, oldest first."""
    return [process(f).status for f in inbox.scan()]


def contact(url: str, rid: str) -> dict:
    with get_engine(url).connect() as conn:
        row = conn.execute(sa.select(contacts).where(contacts.c.source_id == rid)).one()
    return dict(row._mapping)


def seed(url: str, data_dir: Path) -> str:
    """Copies of the canary in every store; returns the text of the first export."""
    first = "\n".join([HEADER, canary_row(), other_row()]) + "\n"
    drop("hubspot-crm-exports-all-contacts-2024-02-01.csv", first)
    assert sync() == ["succeeded"]
    # A later export in which the canary's row is quarantined (unknown lifecycle stage) and a line of it does
    # not parse (too few fields): two dead letters holding the raw row and the raw line.
    broken_line = f'"07001","{CANARY_FIRST}","{CANARY_LAST}","{CANARY_EMAIL}"'
    drop("export-2.csv", "\n".join([HEADER, canary_row("Astronaut", "2024-02-05 10:00"), broken_line]) + "\n")
    # An export without its id column: rejected whole, the file kept in rejected/.
    drop("broken.csv", f'"First Name","Email"\n"{CANARY_FIRST}","{CANARY_EMAIL}"\n')
    assert sorted(sync()) == ["rejected", "succeeded"]
    settings = get_settings()
    day = settings.archive_dir / "hubspot" / "contacts" / "2024-01-15"
    day.mkdir(parents=True, exist_ok=True)
    api = [
        {
            "id": CANARY_ID,
            "properties": {
                "email": CANARY_EMAIL,
                "firstname": CANARY_FIRST,
                "lastname": CANARY_LAST,
                "phone": CANARY_PHONE,
                "lastmodifieddate": "2024-01-10T10:00:00Z",
            },
        },
        {
            "id": "7002",
            "properties": {"email": "ann.lee@example.com", "lastmodifieddate": "2024-01-10T10:00:00Z"},
        },
    ]
    (day / "0123456789ab__contacts-00001.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps(r) + "\n" for r in api).encode())
    )
    (day / "ba9876543210__contacts-page.json").write_text(json.dumps({"results": api}), encoding="utf-8")
    engine = get_engine(url)
    with engine.begin() as conn:
        # What an older version might have leaked into a drift sample and an alert text.
        conn.execute(
            schema_drift.insert().values(
                load_id="ld_old",
                source_system="hubspot",
                entity="contacts",
                contract_version="hubspot.contacts.csv@v1",
                kind="new_column",
                column_name="Notes",
                rows_affected=1,
                sample=json.dumps([f"call {CANARY_FIRST} {CANARY_LAST} back"]),
                detected_at=datetime.now(UTC),
            )
        )
    alert_log = settings.data_dir / "alerts.jsonl"
    alert_log.write_text(
        json.dumps({"key": "check:warehouse/contacts:drift", "summary": "ok"})
        + "\n"
        + json.dumps({"key": "x", "summary": f"bad value {CANARY_EMAIL}"})
        + "\n",
        encoding="utf-8",
    )
    # A property change of the canary still waiting in the SQL queue table.
    body = {
        "eventId": 55,
        "subscriptionType": "contact.propertyChange",
        "objectId": int(CANARY_ID),
        "propertyName": "email",
        "propertyValue": CANARY_EMAIL,
        "occurredAt": 1_707_000_000_000,
    }
    SqlQueue(url).publish_many(
        [
            Message(
                id="hubspot:55",
                source="hubspot",
                event_type="contact.propertyChange",
                body=json.dumps(body).encode(),
                headers={},
                received_at=datetime.now(UTC),
            )
        ]
    )
    return first


def test_cli_erase_leaves_the_canary_nowhere_and_keeps_it_erased(
    warehouse_url: str, isolated_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    json_log = io.StringIO()
    handler = logging.StreamHandler(json_log)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        _erase_and_reload(warehouse_url, isolated_env, caplog, json_log)
    finally:
        logging.getLogger().removeHandler(handler)


def _erase_and_reload(
    warehouse_url: str, isolated_env: Path, caplog: pytest.LogCaptureFixture, json_log: io.StringIO
) -> None:
    first = seed(warehouse_url, isolated_env)
    assert scan(warehouse_url, isolated_env), "the seed must put the canary in the stores"
    runner = CliRunner()

    dry = runner.invoke(
        main, ["privacy", "erase", "--source", "hubspot", "--id", "07001", "--dry-run", "--json"]
    )
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["dry_run"] and planned["erasure_id"] is None
    assert scan(warehouse_url, isolated_env), "a dry run changes nothing"

    result = runner.invoke(main, ["privacy", "erase", "--source", "hubspot", "--id", "7001", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    stores = report["stores"]
    assert report["status"] == "done" and report["source_id"] == CANARY_ID
    assert stores["contacts"] == 1 and stores["dead_letters"] == 2 and stores["event_queue"] == 1
    # The two loaded CSV exports (one holding the quarantined row and the broken line), the gzip JSONL and the
    # JSON page.
    assert stores["archive_files"] == 4 and stores["archive_records"] == 5
    assert stores["rejected_files"] == 1 and stores["alert_log_values"] == 1
    assert stores["schema_drift_values"] == 1
    main_stores = (
        "contacts",
        "dead_letters",
        "event_queue",
        "archive_files",
        "archive_records",
        "rejected_files",
        "alert_log_values",
        "schema_drift_values",
    )
    assert {k: planned["stores"][k] for k in main_stores} == {k: stores[k] for k in main_stores}
    files = {f["path"]: f for f in report["files"]}
    assert all(f["sha256_before"] != f["sha256_after"] for f in files.values())

    row = contact(warehouse_url, CANARY_ID)
    assert (row["email"], row["first_name"], row["last_name"], row["phone"]) == (None, None, None, None)
    assert row["erased_at"] is not None and row["lifecycle_stage"] == "lead" and row["country"] == "France"
    assert contact(warehouse_url, "7002")["email"] == "ann.lee@example.com"
    with get_engine(warehouse_url).connect() as conn:
        audit = conn.execute(sa.select(privacy_erasures)).one()
    assert (
        audit.status == "done" and audit.requested_via == "cli" and json.loads(audit.stores)["contacts"] == 1
    )
    logs = [("log", caplog.text), ("json log", json_log.getvalue()), ("output", result.output)]
    # On SQLite the erasure zeroes what it deletes and truncates the write-ahead log: not even the database
    # file's bytes hold the canary.
    assert scan(warehouse_url, isolated_env, logs, db_files=True) == []

    # Later loads: the original export dropped again is still known (the ledger keeps its hash) and its copy
    # is archived without the erased contact; a newer export still holding the contact updates the rest of
    # the row and leaves the personal columns empty.
    drop("again.csv", first)
    drop("newer.csv", "\n".join([HEADER, canary_row("Customer", "2024-03-01 10:00"), other_row()]) + "\n")
    assert sorted(sync()) == ["duplicate_file", "succeeded"]
    row = contact(warehouse_url, CANARY_ID)
    assert row["lifecycle_stage"] == "customer" and row["email"] is None and row["erased_at"] is not None
    with get_engine(warehouse_url).connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(loads).where(loads.c.status == "duplicate_file")
            ).scalar_one()
            == 1
        )
    assert scan(warehouse_url, isolated_env, [("log", caplog.text), ("json log", json_log.getvalue())]) == []


def test_cli_refuses_a_bad_id_and_an_unknown_source(warehouse_url: str) -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["privacy", "erase", "--source", "hubspot", "--id", "abc"])
    assert bad.exit_code == 2 and "non-negative integers" in bad.output
    unknown = runner.invoke(main, ["privacy", "erase", "--source", "odoo", "--id", "1"])
    assert unknown.exit_code == 2
