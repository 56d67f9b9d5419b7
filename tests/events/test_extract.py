"""Planning a batch and applying it: field extraction equals flatten_record, column typing, routing, contract
edits, HubSpot property changes. On real warehouses (SQLite, and Postgres where the SQL matters)."""

from __future__ import annotations

import random
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from integration_assets.contracts.records import flatten_record
from integration_assets.contracts.spec import CONTRACTS_DIR
from integration_assets.dead_letters.queries import Filter
from integration_assets.events.errors import EventRejected
from integration_assets.events.frames import Extractor, raw_frame
from integration_assets.events.replay import replay_events
from integration_assets.events.routing import Router, parse
from integration_assets.housekeeping.retention import prune
from integration_assets.ingest.load import ingest_file
from integration_assets.policies import RetentionPolicy
from integration_assets.queue import Message
from integration_assets.sandbox.events import hubspot_archive
from integration_assets.warehouse.ledger import utcnow
from tests.events.conftest import (
    NOW,
    SampleEvent,
    Stack,
    contact_change,
    hubspot_event_id,
    pi_event,
    seed_contacts,
    seed_deals,
)

# -- extraction ---------------------------------------------------------------------------------------------


def _random_doc(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.3:
        return rng.choice([None, 1, "x", True, [], {}, [1, 2], 2.5])
    return {
        rng.choice(["a", "b", "c", "a.b", "d"]): _random_doc(rng, depth + 1) for _ in range(rng.randint(0, 3))
    }


def test_extractor_gives_exactly_what_flatten_record_gives() -> None:
    """Walking the contract's paths must give the file path's columns, including the odd cases: keys with
    dots, empty objects, lists, a field that is also the prefix of another."""
    rng = random.Random(5)
    field_sets = (
        ["a", "a.b", "a.b.c", "b", "b.a", "c.d.a", "a.b.a", "d", "a.a", "c", "b.b.b"],
        ["b", "c.d.a"],
    )
    checked = 0
    for _ in range(5000):
        doc = _random_doc(rng)
        if not isinstance(doc, dict):
            continue
        flat = flatten_record(doc)
        for fields in field_sets:
            columns = Extractor(fields).columns([doc])
            for name, column in zip(fields, columns, strict=True):
                assert column[0] == flat.get(name), (name, doc)
                checked += 1
    assert checked > 10_000


def test_raw_frame_types_columns_for_the_vectorised_engine() -> None:
    docs = [
        {"s": "a", "i": 1, "f": 1.5, "b": True, "m": 1, "n": {"x": [1]}},
        {"s": None, "i": None, "m": "2"},
    ]
    frame = raw_frame(docs, ["s", "i", "f", "b", "m", "n.x", "missing"])
    assert frame["s"].dtype == pd.StringDtype("pyarrow")
    assert (
        str(frame["i"].dtype) == "Int64"
        and frame["f"].dtype == "float64"
        and str(frame["b"].dtype) == "boolean"
    )
    assert frame["m"].dtype == object and frame["n.x"].dtype == object  # mixed, nested: as from a JSON file
    assert frame["missing"].isna().all()


# -- routing ------------------------------------------------------------------------------------------------


def _message(source: str, body: bytes, event_type: str = "x.y") -> Message:
    return Message(id=f"{source}:evt_1", source=source, event_type=event_type, body=body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "body", "check"),
    [
        (
            "stripe",
            b'{"type": "customer.created", "data": {"object": {"object": "customer"}}}',
            "unknown_event_type",
        ),
        ("stripe", b'{"type": "payment_intent.succeeded", "data": {}}', "invalid_payload"),
        ("easypost", b'{"description": "batch.created", "result": {}}', "unknown_event_type"),
        ("hubspot", b'{"subscriptionType": "contact.creation", "objectId": 1}', "unknown_event_type"),
        ("stripe", b"[1, 2]", "unparseable"),
        ("stripe", b"\xff\xfe", "unparseable"),
    ],
)
def test_events_without_a_route_are_rejected_with_a_reason(source: str, body: bytes, check: str) -> None:
    router = Router()
    with pytest.raises(EventRejected) as err:
        message = _message(source, body)
        router.route(message, parse(message))
    assert err.value.check == check and err.value.reason


def test_stripe_events_route_by_the_object_they_carry() -> None:
    """charge.refund.updated carries a refund: the refund contract applies, whatever the type's prefix."""
    router = Router()
    m = _message("stripe", b'{"type": "charge.refund.updated", "data": {"object": {"object": "refund"}}}')
    route = router.route(m, parse(m))
    assert route.contract is not None and route.contract.id == "stripe.refund.event@v1"


# -- contracts are data -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["sql-sqlite"], indirect=True)
def test_a_contract_fix_then_replay_applies_the_dead_letter(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new Stripe status is dead-lettered (unknown_value); a v2 contract that knows it, then
    `events replay`, applies it: a mapping change is a contract edit, not a code change."""
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))
    queue = stack.make_queue()
    stack.publish([pi_event(1, "requires_reconfirmation")], queue)
    assert stack.drain(queue).totals.dead_lettered == 1
    v1 = (root / "stripe" / "payment_intent_event.v1.yaml").read_text()
    v2 = v1.replace("version: 1", "version: 2").replace(
        "      succeeded: succeeded\n",
        "      succeeded: succeeded\n      requires_reconfirmation: requires_action\n",
        1,
    )
    (root / "stripe" / "payment_intent_event.v2.yaml").write_text(v2)
    assert replay_events(stack.engine, queue, Filter(check="unknown_value"), who="test").replayed
    report = stack.drain(queue, wait_s=0.5)
    assert report.totals.applied == 1, report.as_dict()
    (row,) = stack.rows("payments")
    assert (row["status"], row["mapping_version"]) == ("requires_action", "stripe.payment_intent.event@v2")


# -- HubSpot property changes -------------------------------------------------------------------------------


@pytest.fixture
def contacts(stack: Stack, tmp_path: Path) -> Stack:
    seed_contacts(tmp_path, ["101", "102", "103"], warehouse_url=stack.warehouse_url)
    return stack


@pytest.mark.parametrize(
    "stack", ["sql-sqlite", pytest.param("sql-postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_hubspot_property_changes(contacts: Stack) -> None:
    stack = contacts
    base = {r["source_id"]: r for r in stack.rows("contacts")}
    seeded_at = base["101"]["source_updated_at"]
    newer, older = NOW, NOW - timedelta(days=30)
    queue = stack.make_queue()
    stack.publish(
        [
            contact_change(1, "101", "firstname", "Ada", newer - timedelta(seconds=2)),
            contact_change(2, "101", "firstname", "Grace", newer),  # same property, newer: wins
            contact_change(
                3, "101", "lifecyclestage", "marketingqualifiedlead", newer - timedelta(seconds=1)
            ),
            contact_change(4, "102", "lastname", "", newer),  # cleared
            contact_change(5, "103", "firstname", "Too old", older),  # older than the row: stale
            contact_change(6, "103", "hs_object_id", "103", newer),  # known, deliberately not mapped
            contact_change(7, "103", "favourite_colour", "teal", newer),  # unknown property
            contact_change(8, "103", "lifecyclestage", "zzz", newer),  # not in the contract's vocabulary
        ],
        queue,
    )
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    rows = {r["source_id"]: r for r in stack.rows("contacts")}
    assert (rows["101"]["first_name"], rows["101"]["lifecycle_stage"]) == ("Grace", "marketingqualifiedlead")
    assert rows["102"]["last_name"] is None
    assert rows["103"]["first_name"] == "Old" and rows["103"]["source_updated_at"] == seeded_at
    assert (
        rows["101"]["load_id"].startswith("drain_")
        and rows["101"]["mapping_version"] == "hubspot.contacts.api@v1"
    )
    assert pd.Timestamp(rows["101"]["source_updated_at"]).tz_localize(None) == pd.Timestamp(
        newer
    ).tz_localize(None)
    assert rows["101"]["email"] == base["101"]["email"]  # untouched columns keep their values
    outcomes = {hubspot_event_id(r["event_id"]): r["outcome"] for r in stack.ledger()}
    assert outcomes == {
        "hubspot:1": "stale",
        "hubspot:2": "applied",
        "hubspot:3": "applied",
        "hubspot:4": "applied",
        "hubspot:5": "stale",
        "hubspot:6": "ignored",
    }
    assert {hubspot_event_id(r["natural_key"]): r["check_name"] for r in stack.dead_letters()} == {
        "hubspot:7": "unknown_property",
        "hubspot:8": "unknown_value",
    }


@pytest.mark.parametrize(
    "stack", ["sql-sqlite", pytest.param("sql-postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_hubspot_deletions_and_restores_mark_the_row(contacts: Stack) -> None:
    """A deletion sets archived_at to its time (the row stays, marked deleted), a later restore clears it, a
    deletion older than the row is stale, and one for an unknown contact is dead-lettered."""
    stack = contacts
    seeded_at = {r["source_id"]: r["source_updated_at"] for r in stack.rows("contacts")}

    def event(eid: int, obj: str, when: Any, kind: str = "contact.deletion") -> SampleEvent:
        return SampleEvent("hubspot", f"hubspot:{eid}", hubspot_archive(eid, obj, when, kind), object_id=obj)

    queue = stack.make_queue()
    stack.publish(
        [
            event(1, "101", NOW - timedelta(minutes=5)),
            event(2, "102", NOW - timedelta(minutes=5)),
            event(3, "102", NOW, "contact.restore"),  # restored after the deletion: not deleted
            event(4, "103", NOW - timedelta(days=30)),  # older than the row: stale
            event(5, "999", NOW),  # not in the warehouse
            contact_change(6, "101", "firstname", "Gone", NOW - timedelta(minutes=10)),  # before the deletion
        ],
        queue,
    )
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    rows = {r["source_id"]: r for r in stack.rows("contacts")}
    stamp = pd.Timestamp(NOW - timedelta(minutes=5)).tz_localize(None)
    assert pd.Timestamp(rows["101"]["archived_at"]).tz_localize(None) == stamp
    assert pd.Timestamp(rows["101"]["source_updated_at"]).tz_localize(None) == stamp
    assert rows["101"]["first_name"] == "Gone"  # the earlier change still applies: the row stays whole
    assert rows["102"]["archived_at"] is None
    assert rows["103"]["archived_at"] is None and rows["103"]["source_updated_at"] == seeded_at["103"]
    outcomes = {hubspot_event_id(r["event_id"]): r["outcome"] for r in stack.ledger()}
    assert outcomes == {
        "hubspot:1": "applied",
        "hubspot:2": "stale",
        "hubspot:3": "applied",
        "hubspot:4": "stale",
        "hubspot:6": "applied",
    }
    assert {hubspot_event_id(r["natural_key"]): r["check_name"] for r in stack.dead_letters()} == {
        "hubspot:5": "unknown_object"
    }


@pytest.mark.parametrize("stack", ["sql-sqlite"], indirect=True)
def test_deal_stage_change_recomputes_closed_won(stack: Stack, tmp_path: Path) -> None:
    seed_deals(tmp_path, ["77"], warehouse_url=stack.warehouse_url)
    queue = stack.make_queue()
    stack.publish(
        [contact_change(1, "77", "dealstage", "closedwon", NOW, subscription="deal.propertyChange")], queue
    )
    assert stack.drain(queue).totals.applied == 1
    (deal,) = stack.rows("deals")
    assert (deal["stage"], deal["is_closed_won"], deal["name"]) == ("closedwon", True, "Deal 77")


@pytest.mark.parametrize("stack", [pytest.param("sql-postgres", marks=pytest.mark.postgres)], indirect=True)
def test_backfill_and_live_changes_at_once_keep_the_newest(stack: Stack, tmp_path: Path) -> None:
    """A batch backfill of contacts runs while live HubSpot property changes of 10% of the same ids are
    drained (RELIABILITY scenario 25). Whatever the interleaving, the backfill never overwrites a newer live
    change, the live changes are not lost, and neither side fails or waits for the other to commit."""
    import json
    import threading

    ids = [str(100_000 + i) for i in range(3_000)]
    seed_contacts(tmp_path, ids, modified=NOW - timedelta(days=3), warehouse_url=stack.warehouse_url)
    live = ids[::10]
    queue = stack.make_queue()
    stack.publish([contact_change(k + 1, i, "firstname", "Live", NOW) for k, i in enumerate(live)], queue)
    backfill = tmp_path / "backfill.jsonl"
    stamp = (NOW - timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )  # newer than the seed, older than live
    with backfill.open("w") as fh:
        for i in [*ids, *(str(200_000 + k) for k in range(2_000))]:
            fh.write(
                json.dumps(
                    {
                        "id": i,
                        "properties": {
                            "email": f"c{i}@example.com",
                            "firstname": "Backfill",
                            "lastname": f"L{i}",
                            "lifecyclestage": "lead",
                            "lastmodifieddate": stamp,
                            "createdate": "2024-01-01T00:00:00.000Z",
                            "hs_object_id": i,
                        },
                    }
                )
                + "\n"
            )
    start = threading.Barrier(2)
    results: dict[str, Any] = {}

    def run_backfill() -> None:
        start.wait()
        results["backfill"] = ingest_file(backfill, "hubspot", "contacts", engine=stack.engine, force=True)

    def run_live() -> None:
        start.wait()
        results["live"] = stack.drain(queue, batch_size=20)

    threads = [threading.Thread(target=run_backfill), threading.Thread(target=run_live)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results["backfill"].status == "succeeded" and results["backfill"].balanced
    assert results["live"].balanced
    rows = {r["source_id"]: r for r in stack.rows("contacts")}
    assert len(rows) == 5_000
    assert {rows[i]["first_name"] for i in live} == {"Live"}
    assert {rows[i]["first_name"] for i in ids if i not in set(live)} == {"Backfill"}
    outcomes = [r["outcome"] for r in stack.ledger()]
    assert len(outcomes) == len(live) and set(outcomes) == {"applied"}


def test_a_redelivery_after_the_ledger_was_pruned_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    """Retention removes old processed_events rows, so a very late redelivery is no longer recognised as a
    duplicate; the stale-version guard and equal row hashes still leave every canonical row as it was."""
    seed_contacts(tmp_path, ["501"], warehouse_url=stack.warehouse_url)
    events = [
        pi_event(1, "processing", created=1_790_000_000),
        pi_event(1, "succeeded", created=1_790_000_100),
        pi_event(2),
        contact_change(7, "501", "firstname", "Live", NOW),
    ]
    queue = stack.make_queue()
    stack.publish(events, queue)
    assert stack.drain(queue).totals.duplicates == 0
    before = {t: stack.rows(t) for t in ("payments", "contacts")}
    assert [p["status"] for p in before["payments"]] == ["succeeded", "succeeded"]

    removed = prune(stack.engine, RetentionPolicy(), now=utcnow() + timedelta(days=91)).removed
    assert removed["processed_events"] == 4 and stack.ledger() == []
    stack.publish(list(reversed(events)), queue)  # the oldest version last, as a late retry would come
    again = stack.drain(queue)
    assert again.totals.duplicates == 0 and again.balanced  # not recognisable as duplicates any more ...
    assert {t: stack.rows(t) for t in ("payments", "contacts")} == before  # ... and yet nothing changed
