"""Webhook gap-fill for HubSpot (issue 13): deal property changes whose webhooks were missed are covered by the
modified-time pull of the same day (``api/hubspot/deals``), and the webhooks arriving late change nothing (their
changes are not newer than the pulled record). Fake HubSpot over real HTTP, the real ingest path and drain, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from integration_assets.assets.pull import build_partitioned_asset
from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.events.drain import drain
from integration_assets.jobs.pull import HubSpotResource
from integration_assets.policies import load_policies
from integration_assets.providers import PROVIDERS
from integration_assets.queue import open_queue
from integration_assets.resources import WarehouseResource
from integration_assets.sandbox.events import hubspot_change
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.warehouse.schema import deals
from integration_assets.webhooks.receive import provider_messages
from tests.outbound import conftest as _outbound
from tests.outbound.conftest import sqlite_template  # noqa: F401 - the fixture below needs it

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
DAY0, DAY1 = TODAY - timedelta(days=3), TODAY - timedelta(days=2)
KEY0, KEY1 = DAY0.strftime("%Y-%m-%d"), DAY1.strftime("%Y-%m-%d")

# The SQLite warehouse copied from a migrated template (tests/outbound/conftest.py): no migrations per test.
warehouse_url = _outbound.warehouse_url


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as i:
        yield i


def _pull(hubspot: FakeHubSpot, instance: dg.DagsterInstance, key: str) -> dict[str, Any]:
    res = dg.materialize(
        [build_partitioned_asset("hubspot", "deals", load_policies())],
        partition_key=key,
        instance=instance,
        resources={
            "hubspot": HubSpotResource(access_token=hubspot.token, base_url=hubspot.url),
            "warehouse": WarehouseResource(),
        },
    )
    [day] = [e.materialization.metadata for e in res.get_asset_materialization_events() if e.partition == key]
    return {k: v.value for k, v in day.items()}


def _deal(engine: sa.Engine, deal_id: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(deals.c.stage, deals.c.amount, deals.c.source_updated_at).where(
                deals.c.source_id == deal_id
            )
        ).one()
    return (row.stage, float(row.amount), row.source_updated_at)


def test_changes_missed_by_webhooks_are_covered_by_the_days_pull(
    hubspot: FakeHubSpot, warehouse_url: str, engine: sa.Engine, instance: dg.DagsterInstance
) -> None:
    deal_id = hubspot.add(
        "deals",
        {
            "dealname": "Big order",
            "dealstage": "appointmentscheduled",
            "pipeline": "default",
            "amount": "100.00",
        },
        modified=DAY0 + timedelta(hours=10),
    )
    assert _pull(hubspot, instance, KEY0)["rows_inserted"] == 1
    assert _deal(engine, deal_id)[:2] == ("appointmentscheduled", 100.0)

    # On DAY1 the deal is won at a new amount; the receiver is down: both property-change webhooks are missed.
    changed_at = DAY1 + timedelta(hours=9)
    hubspot.touch("deals", [deal_id], at=changed_at, dealstage="closedwon", amount="250.00")

    day1 = _pull(hubspot, instance, KEY1)

    assert (day1["records_pulled"], day1["rows_updated"], day1["rows_inserted"]) == (1, 1, 0)
    stage, amount, updated = _deal(engine, deal_id)
    assert (stage, amount) == ("closedwon", 250.0)

    # The webhooks arrive late (HubSpot retries): the two changes of DAY1 and an older amount change.
    late = [
        hubspot_change(801, deal_id, "dealstage", "closedwon", changed_at, "deal.propertyChange"),
        hubspot_change(802, deal_id, "amount", "250.00", changed_at, "deal.propertyChange"),
        hubspot_change(
            803, deal_id, "amount", "180.00", changed_at - timedelta(hours=1), "deal.propertyChange"
        ),
    ]
    body = json.dumps(late).encode()
    messages = provider_messages(
        PROVIDERS["hubspot"], late, body, {"content-type": "application/json"}, datetime.now(UTC)
    )
    queue = open_queue(
        "sql?name=hubspot_late", warehouse_url=warehouse_url, dead_letter_sink=write_event_dead_letters
    )
    try:
        queue.publish_many(messages)
        report = drain(queue, engine=engine)
    finally:
        queue.close()

    assert report.totals.events_in == 3 and report.totals.stale == 3 and report.totals.applied == 0
    assert _deal(engine, deal_id) == (stage, amount, updated)  # nothing changed

    # Re-running the day changes nothing either (the merge is idempotent).
    again = _pull(hubspot, instance, KEY1)
    assert again["rows_written"] == 0 and _deal(engine, deal_id) == (stage, amount, updated)
