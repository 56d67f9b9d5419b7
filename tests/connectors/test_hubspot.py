"""HubSpot connector against the local fake: paging, incremental search, the search cap, rate limits, timeouts."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from integration_assets.connectors._retry import HttpRetry, RetriesExhausted, RetryBudget
from integration_assets.connectors.hubspot.client import HubSpotClient
from integration_assets.connectors.hubspot.errors import HubSpotAuthError, HubSpotDailyLimit
from integration_assets.connectors.landing import CursorStore, pull_entity
from integration_assets.errors import TerminalError, TransientError
from integration_assets.policies import load_policies
from integration_assets.quality.connector_health import http_error_health, warehouse_status_recorder
from integration_assets.sandbox.fakes._server import Fault
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot, rate_limited, storm
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import connector_http_stats
from tests.connectors.conftest import FAST, inbox_files, landed_records


def client(fake: FakeHubSpot, **kw) -> HubSpotClient:
    kw.setdefault("retry", FAST)
    kw.setdefault("search_min_interval", 0)
    return HubSpotClient(fake.token, fake.url, rng=random.Random(3), **kw)


def inbox() -> Path:
    return get_settings().inbox_dir


def test_full_pull_pages_to_the_end_with_properties_and_associations(hubspot: FakeHubSpot) -> None:
    hubspot.seed(companies=4, contacts=250, deals=0)
    with client(hubspot) as c:
        report = pull_entity(c, "contacts", records_per_file=100)
    assert (report.mode, report.records, report.pages, len(report.files)) == ("full", 250, 3, 3)
    got = landed_records(inbox(), "hubspot", "contacts")
    assert sorted(r["id"] for r in got) == sorted(hubspot.objects["contacts"])
    gets = [r for r in hubspot.requests if r.method == "GET" and r.query.get("archived") == ["false"]]
    assert len(gets) == 3 and "after" not in gets[0].query and all("after" in r.query for r in gets[1:])
    # then the deleted records, which the live list leaves out (none here)
    assert [r.query.get("archived") for r in hubspot.requests if r.method == "GET"][-1] == ["true"]
    q = gets[0].query
    assert q["limit"] == ["100"] and q["associations"] == ["companies"]
    assert set(q["properties"][0].split(",")) >= {
        "email",
        "lastmodifieddate",
        "lifecyclestage",
        "hs_lead_status",
    }
    with_company = [
        r for r in got if r["properties"]["email"].endswith("1@example.com") and "associations" in r
    ]
    assert (
        with_company
        and with_company[0]["associations"]["companies"]["results"][0]["type"] == "contact_to_company"
    )
    assert all(r["properties"]["phone"] is None or isinstance(r["properties"]["phone"], str) for r in got)


def test_second_pull_gets_only_the_changed_records_with_their_associations(hubspot: FakeHubSpot) -> None:
    hubspot.seed(companies=3, contacts=40, deals=5)
    with client(hubspot) as c:
        first = pull_entity(c, "contacts")
        changed = ["1010", "1011", "1020", "1042"]
        hubspot.touch("contacts", changed, firstname="Renamed")
        hubspot.clear_log()
        second = pull_entity(c, "contacts")
        third = pull_entity(c, "contacts")
    assert first.records == 40 and second.mode == "incremental"
    new = json.loads("[" + ",".join(Path(second.files[0]).read_text().splitlines()) + "]")
    assert sorted(r["id"] for r in new) == sorted(changed) and second.records == 4
    assert all(r["properties"]["firstname"] == "Renamed" for r in new)
    for r in new:  # search results carry no associations: the client read them and put them back
        expected = hubspot.objects["contacts"][r["id"]]["companies"]
        assert [
            a["id"] for a in r.get("associations", {}).get("companies", {}).get("results", [])
        ] == expected
    paths = [r.path for r in hubspot.requests]
    assert (
        "/crm/v3/objects/contacts/search" in paths
        and "/crm/v3/associations/contacts/companies/batch/read" in paths
    )
    search = next(r for r in hubspot.requests if r.path.endswith("/search")).body
    assert search["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert search["filterGroups"][0]["filters"][0]["operator"] == "GTE"
    assert third.records == 0 and third.files == []  # nothing changed since


def test_deletions_are_pulled_from_the_archive_and_load_as_archived(
    hubspot: FakeHubSpot, sqlite_warehouse: str
) -> None:
    """Deleted records leave the list and the search; a pull lists the archived ones since its cursor (archivedAt)
    and lands them with archivedAt, and the load marks their rows instead of leaving them live forever."""
    from integration_assets.ingest.load import ingest_file
    from integration_assets.warehouse.schema import CANONICAL_TABLES

    hubspot.seed(companies=2, contacts=20, deals=0)
    with client(hubspot) as c:
        first = pull_entity(c, "contacts")
        hubspot.archive("contacts", ["1005", "1006"])
        second = pull_entity(c, "contacts")
        third = pull_entity(c, "contacts")
    assert first.records == 20 and second.mode == "incremental"
    landed = [json.loads(line) for f in second.files for line in Path(f).read_text().splitlines()]
    assert sorted(r["id"] for r in landed) == ["1005", "1006"]
    assert all(r["archived"] and r["archivedAt"] for r in landed)
    assert third.records == 0  # already landed: the cursor's window knows them
    engine = get_engine(sqlite_warehouse)
    for f in [*first.files, *second.files]:
        assert ingest_file(Path(f), "hubspot", "contacts", engine=engine).status == "succeeded"
    t = CANONICAL_TABLES["contacts"]
    with engine.connect() as conn:
        gone = {
            r.source_id for r in conn.execute(sa.select(t.c.source_id).where(t.c.archived_at.is_not(None)))
        }
    assert gone == {"1005", "1006"}


def test_search_never_pages_past_the_result_cap(hubspot: FakeHubSpot) -> None:
    # The fake refuses paging past 250 results; 700 changed records, some sharing one timestamp.
    hubspot.search_cap = 250
    hubspot.seed(companies=0, contacts=700, deals=0)
    store = CursorStore()
    base = datetime(2025, 6, 1, tzinfo=UTC)
    ids = sorted(hubspot.objects["contacts"], key=int)
    with client(hubspot) as c:
        store.save("hubspot", "contacts", type(store.load("hubspot", "contacts"))(watermark=base))
        for i, rid in enumerate(ids[:550]):
            hubspot.touch("contacts", [rid], at=base + timedelta(seconds=i))
        hubspot.touch("contacts", ids[550:], at=base + timedelta(hours=1))  # 150 in the same millisecond
        report = pull_entity(c, "contacts", store=store)
    assert report.records == 700 and report.mode == "incremental"
    assert sorted(r["id"] for r in landed_records(inbox(), "hubspot", "contacts")) == sorted(ids)
    assert 400 not in hubspot.statuses()
    searches = [r.body for r in hubspot.requests if r.path.endswith("/search")]
    assert max(int(b.get("after") or 0) for b in searches) < 250
    assert any("after" in b for b in searches)  # the run of 150 equal timestamps was paged through


def test_429_storm_honours_retry_after_stays_in_budget_loses_nothing_and_is_recorded(
    hubspot: FakeHubSpot, sqlite_warehouse: str
) -> None:
    hubspot.seed(companies=20, contacts=150, deals=20)  # 10 pages of 20
    hubspot.fault = storm(
        rate=0.3, retry_after=1, seed=1
    )  # 5 of the 15 calls; Retry-After seconds/date/none in turn
    budget = RetryBudget(limit=25)
    engine = get_engine(sqlite_warehouse)
    with client(
        hubspot, budget=budget, page_limit=20, recorder=warehouse_status_recorder("hubspot", engine)
    ) as c:
        reports = [pull_entity(c, e) for e in c.entities]
    log = list(hubspot.requests)
    throttled = [i for i, r in enumerate(log) if r.status == 429]
    forms = {r.fault for r in log if r.status == 429}
    assert len(throttled) >= 4 and {"429 seconds", "429 date", "429 no Retry-After"} <= forms, forms
    for i in throttled:  # the retry of a throttled call came no earlier than it was told
        if log[i].not_before is not None:
            assert log[i + 1].at >= log[i].not_before, (log[i].fault, log[i + 1].at - log[i].not_before)
    pages = sum(r.pages for r in reports)
    # one listing of the (empty) archive per entity, after its live records
    archive = [r for r in log if r.query.get("archived") == ["true"] and r.status == 200]
    assert len(archive) == 3
    assert len(log) == pages + len(archive) + len(throttled) <= pages + len(archive) + budget.limit
    assert budget.used == len(throttled)
    for entity in ("companies", "contacts", "deals"):  # 0 pages lost
        assert sorted(r["id"] for r in landed_records(inbox(), "hubspot", entity)) == sorted(
            hubspot.objects[entity]
        )
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.select(connector_http_stats.c.status_class, sa.func.sum(connector_http_stats.c.count))
                .where(connector_http_stats.c.source_system == "hubspot")
                .group_by(connector_http_stats.c.status_class)
            ).all()
        )
        [health] = http_error_health(conn, load_policies().connector_http_errors)
    assert counts == {"429": len(throttled), "2xx": pages + len(archive)}
    assert health.by_class["429"] == len(throttled)  # what connector_http_error_alerts evaluates


@pytest.mark.parametrize(
    ("policy", "retry_after", "at_least"),
    [
        (
            "TEN_SECONDLY_ROLLING",
            None,
            10.0,
        ),  # the rolling window, from X-HubSpot-RateLimit-Interval-Milliseconds
        ("TEN_SECONDLY_ROLLING", 1, 10.0),  # a shorter Retry-After does not shorten the window
        ("SECONDLY", None, 1.0),  # search's per-second limit
    ],
)
def test_rolling_limits_wait_their_window(
    hubspot: FakeHubSpot, policy: str, retry_after: int | None, at_least: float
) -> None:
    hubspot.seed(companies=3, contacts=0, deals=0)
    sent = iter(range(100))
    hubspot.fault = lambda req: rate_limited(policy, retry_after=retry_after) if next(sent) == 0 else None  # type: ignore[arg-type]
    sleeps: list[float] = []
    with client(hubspot, sleep=sleeps.append) as c:
        report = pull_entity(c, "companies")
    assert report.records == 3 and hubspot.statuses() == [429, 200, 200]  # the list, again; then the archive
    assert len(sleeps) == 1 and at_least <= sleeps[0] <= at_least + 1.0


@pytest.mark.parametrize("records_per_file", [1000, 100])
def test_daily_limit_is_terminal_and_leaves_nothing_half_written(
    hubspot: FakeHubSpot, records_per_file: int
) -> None:
    hubspot.seed(companies=0, contacts=350, deals=0)
    sent = iter(range(100))
    hubspot.fault = lambda req: rate_limited("DAILY") if next(sent) == 2 else None
    with client(hubspot) as c:
        with pytest.raises(HubSpotDailyLimit) as err:
            pull_entity(c, "contacts", records_per_file=records_per_file)
        assert (
            isinstance(err.value, TerminalError)
            and "DAILY" in str(err.value)
            and "midnight" in str(err.value)
        )
        assert len(hubspot.requests) == 3  # not retried
        with pytest.raises(HubSpotDailyLimit):  # and the client makes no further call today
            c.list_page("companies", properties=["name"])
        assert len(hubspot.requests) == 3
    files = inbox_files(inbox(), "hubspot", "contacts")
    assert not [f for f in files if f.name.endswith(".part")]
    # Only whole files: none with 1000 per file; the two full pages' files with 100 per file.
    assert len(landed_records(inbox(), "hubspot", "contacts")) == (0 if records_per_file == 1000 else 200)
    assert not CursorStore().path("hubspot", "contacts").exists()  # a full pull saves its cursor at the end


def test_a_wrong_token_is_terminal_without_showing_it(hubspot: FakeHubSpot) -> None:
    hubspot.seed(companies=1, contacts=0, deals=0)
    with HubSpotClient("pat-na1-wrong-token", hubspot.url, retry=FAST) as c:
        with pytest.raises(HubSpotAuthError) as err:
            pull_entity(c, "companies")
    msg = str(err.value)
    assert (
        "HUBSPOT_ACCESS_TOKEN" in msg and "INVALID_AUTHENTICATION" in msg and "pat-na1-wrong-token" not in msg
    )
    assert hubspot.statuses() == [401]


def test_a_slow_hubspot_times_out_is_retried_then_fails_cleanly(
    hubspot: FakeHubSpot, sqlite_warehouse: str
) -> None:
    hubspot.seed(companies=2, contacts=0, deals=0)
    engine = get_engine(sqlite_warehouse)
    fast_timeout = httpx.Timeout(0.25, connect=1.0)
    # Slow on the first call only: the timeout is transient, the retry succeeds.
    sent = iter(range(100))
    hubspot.fault = lambda req: Fault(delay=1.0) if next(sent) == 0 else None
    with client(hubspot, timeout=fast_timeout) as c:
        assert pull_entity(c, "companies").records == 2
    # Slower than the timeout on every call: a few attempts, then one clean transient error, nothing landed.
    hubspot.fault = None
    hubspot.latency = 1.0
    hubspot.clear_log()
    with client(
        hubspot,
        timeout=fast_timeout,
        retry=HttpRetry(max_attempts=3, backoff_base=0.01),
        recorder=warehouse_status_recorder("hubspot", engine),
    ) as c:
        with pytest.raises(RetriesExhausted) as err:
            pull_entity(c, "contacts")
    assert isinstance(err.value, TransientError) and "timed out" in str(err.value) and err.value.attempts == 3
    assert len(hubspot.requests) == 3
    assert inbox_files(inbox(), "hubspot", "contacts") == []
    with engine.connect() as conn:
        transport = conn.execute(
            sa.select(sa.func.sum(connector_http_stats.c.count)).where(
                connector_http_stats.c.status_class == "transport"
            )
        ).scalar()
    assert transport == 3
