"""Event keys at the edges: HubSpot's non-unique eventId, key collisions, split batches, the generic HubSpot
format and ignored event types, on every queue × warehouse combination (``stack``)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from integration_assets.cli.status import event_status, ignored_event_counts
from integration_assets.events.extract import Planner
from integration_assets.events.routing import Router, ignore_patterns
from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.policies import DEFAULT_POLICIES_FILE, PolicyError, load_policies
from integration_assets.providers import PROVIDERS, volatile_fields
from integration_assets.providers.hubspot import event_key as hubspot_event_key
from integration_assets.queue import Message
from integration_assets.queue.keys import CONTENT_HEADER, body_fingerprint
from integration_assets.queue.sql import SqlQueue
from integration_assets.sandbox.events import (
    HUBSPOT_TEST_CREATION,
    HUBSPOT_TEST_PROPERTY_CHANGE,
    SampleEvent,
    hubspot_archive,
    hubspot_change,
    stripe_event,
)
from integration_assets.webhooks.metrics import metrics_registry
from integration_assets.webhooks.receive import provider_messages
from tests.events.conftest import (
    NOW,
    Stack,
    contact_change,
    hubspot_batch_with_a_bad_element,
    hubspot_event_id,
    pi_event,
    seed_contacts,
)


def hubspot(payload: dict[str, Any]) -> SampleEvent:
    return SampleEvent("hubspot", hubspot_event_key(payload), payload, object_id=str(payload.get("objectId")))


def by_check(stack: Stack) -> dict[str, str]:
    return {r["natural_key"]: r["check_name"] for r in stack.dead_letters()}


def test_hubspot_test_deliveries_with_one_event_id_are_two_events(stack: Stack, tmp_path: Path) -> None:
    """The captured test pair (eventId 100 twice) and two property changes modelled on it are four events:
    each one applied or dead-lettered on its own, none dropped as a duplicate of another; a retry of one
    (attemptNumber 1) is a duplicate."""
    seed_contacts(tmp_path, ["123", "124"], warehouse_url=stack.warehouse_url)
    when = NOW - timedelta(minutes=1)
    first = hubspot_change(100, "123", "firstname", "Ada", when) | {"subscriptionId": 2902227}
    second = hubspot_change(100, "124", "lastname", "Lovelace", when) | {"subscriptionId": 2902227}
    events = [
        hubspot(HUBSPOT_TEST_CREATION),
        hubspot(HUBSPOT_TEST_PROPERTY_CHANGE),
        hubspot(first),
        hubspot(second),
    ]
    assert len({e.event_id for e in events}) == 4
    queue = stack.make_queue()
    stack.publish(events, queue)
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    assert (report.totals.applied, report.totals.dead_lettered, report.totals.duplicates) == (2, 2, 0)
    rows = {r["source_id"]: r for r in stack.rows("contacts")}
    assert (rows["123"]["first_name"], rows["124"]["last_name"]) == ("Ada", "Lovelace")
    assert by_check(stack) == {
        events[0].event_id: "unknown_event_type",  # contact.creation: no handler (not configured to ignore)
        events[1].event_id: "unknown_property",  # "message" is no contact property of the contract
    }
    retry = {**first, "attemptNumber": 1}
    assert hubspot_event_key(retry) == events[2].event_id
    stack.publish([hubspot(retry)], queue)
    again = stack.drain(queue, wait_s=0.5)
    assert (again.totals.events_in, again.totals.duplicates, again.totals.applied) == (1, 1, 0)


def test_key_collision_is_dead_lettered_and_an_identical_redelivery_is_a_duplicate(stack: Stack) -> None:
    """One key, two contents: the first applies, the second is dead-lettered (key_collision) under a key of
    its own, whether both are queued at once or the second comes after the first was processed."""
    queue = stack.make_queue()
    original = pi_event(1, evt="evt_collide00001")
    other = pi_event(1, evt="evt_collide00001", amount=999_999)  # same evt_ id, other content
    assert original.event_id == other.event_id
    stack.publish([original, other], queue)
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    [row] = stack.rows("payments")
    assert row["amount"] == 2000
    [letter] = stack.dead_letters()
    assert letter["check_name"] == "key_collision"
    assert letter["natural_key"].startswith("stripe:evt_collide00001#collision-")
    assert json.loads(letter["raw_record"])["data"]["object"]["amount"] == 999_999
    if isinstance(queue, SqlQueue):  # found at publish: the queue never held the second copy
        assert queue.last_publish.collisions == ("stripe",)
    # After the first was processed: against the ledger. A third content collides too; a redelivery of
    # the original (pending_webhooks changes between attempts) is a duplicate.
    third = pi_event(1, evt="evt_collide00001", amount=5)
    redelivery = SampleEvent("stripe", original.event_id, {**original.payload, "pending_webhooks": 3})
    stack.publish([third], queue)
    later = stack.drain(queue, wait_s=0.5)
    assert later.balanced, later.as_dict()
    assert (later.totals.dead_lettered, later.totals.applied) == (1, 0)
    stack.publish([redelivery], queue)
    last = stack.drain(queue, wait_s=0.5)
    assert (last.totals.duplicates, last.totals.dead_lettered, last.totals.applied) == (1, 0, 0)
    checks = sorted(r["check_name"] for r in stack.dead_letters())
    assert checks == ["key_collision", "key_collision"]

    scraped = generate_latest(metrics_registry(WebhookMetrics(), lambda: stack.engine)).decode()
    assert 'integration_event_key_collisions{source="stripe"} 2.0' in scraped
    [row] = stack.rows("payments")
    assert row["amount"] == 2000


def test_sql_queue_counts_pending_duplicates_and_collisions_at_publish(stack: Stack) -> None:
    if not stack.name.startswith("sql"):
        pytest.skip("only the SQL queue deduplicates at publish")
    queue = stack.make_queue()
    assert isinstance(queue, SqlQueue)
    original = pi_event(2, evt="evt_pending00002")
    other = pi_event(2, evt="evt_pending00002", amount=7)
    stack.publish([original], queue)
    stack.publish([original, other], queue)
    assert queue.last_publish.duplicates == ("stripe",)
    assert queue.last_publish.collisions == ("stripe",)
    assert queue.depth() == 1
    [letter] = stack.dead_letters()
    assert letter["check_name"] == "key_collision" and "already queued" in letter["reason"]
    report = stack.drain(queue)
    assert (report.totals.applied, report.totals.dead_lettered) == (1, 0)
    assert stack.rows("payments")[0]["amount"] == 2000


def test_hubspot_batch_with_a_bad_element_is_split(stack: Stack, tmp_path: Path) -> None:
    """100 events, element 57 malformed: 99 apply, the bad one is dead-lettered with the receiver's reason
    and its raw element; the same batch delivered again changes nothing and adds no second dead letter."""
    elements = hubspot_batch_with_a_bad_element(tmp_path, warehouse_url=stack.warehouse_url)
    body = json.dumps(elements).encode()
    msgs = messages_of_batch(body)
    assert len(msgs) == 100 and sum("x-receiver-check" in m.headers for m in msgs) == 1
    queue = stack.make_queue()
    stack.publish(msgs, queue)
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    assert (report.totals.applied, report.totals.dead_lettered) == (99, 1)
    [letter] = stack.dead_letters()
    assert letter["check_name"] == "invalid_payload"
    assert "element 57 of 100" in letter["reason"] and "eventId" in letter["reason"]
    assert json.loads(letter["raw_record"]) == elements[57]
    names = {r["source_id"]: r["first_name"] for r in stack.rows("contacts")}
    assert names["5000"] == "N0" and names["5057"] == "Old" and names["5099"] == "N99"
    stack.publish(messages_of_batch(body), queue)
    again = stack.drain(queue, wait_s=0.5)
    assert again.balanced and again.totals.duplicates == 100, again.as_dict()
    assert len(stack.dead_letters()) == 1


def messages_of_batch(body: bytes) -> list[Message]:

    return provider_messages(
        PROVIDERS["hubspot"], json.loads(body), body, {"content-type": "application/json"}, NOW
    )


def test_generic_hubspot_format_goes_to_the_same_handlers(stack: Stack, tmp_path: Path) -> None:
    """object.propertyChange / object.deletion with objectTypeId 0-1 patch and archive contacts like
    contact.propertyChange / contact.deletion; an object type not handled is still an unknown type."""
    seed_contacts(tmp_path, ["201", "202"], warehouse_url=stack.warehouse_url)
    change = hubspot_change(
        1, "201", "firstname", "Grace", NOW - timedelta(minutes=2), "object.propertyChange"
    )
    deletion = hubspot_archive(2, "202", NOW - timedelta(minutes=1), "object.deletion")
    ticket = hubspot_change(3, "201", "subject", "Help", NOW, "object.propertyChange") | {
        "objectTypeId": "0-5"
    }
    events = [
        hubspot(change | {"objectTypeId": "0-1"}),
        hubspot(deletion | {"objectTypeId": "0-1"}),
        hubspot(ticket),
    ]
    queue = stack.make_queue()
    stack.publish(events, queue)
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    rows = {r["source_id"]: r for r in stack.rows("contacts")}
    assert rows["201"]["first_name"] == "Grace"
    assert rows["202"]["archived_at"] is not None
    assert by_check(stack) == {events[2].event_id: "unknown_event_type"}
    assert {hubspot_event_id(r["event_id"]): r["outcome"] for r in stack.ledger()} == {
        "hubspot:1": "applied",
        "hubspot:2": "applied",
    }


@pytest.fixture
def ignoring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A policies file that ignores contact.creation, EasyPost batch.* and Stripe invoice.*."""

    doc = yaml.safe_load(DEFAULT_POLICIES_FILE.read_text())
    doc["events"] = {
        "ignore": {"hubspot": ["contact.creation"], "easypost": ["batch.*"], "stripe": ["invoice.*"]}
    }
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(path))
    return path


def easypost_batch_event(evt: str) -> SampleEvent:
    payload = {
        "id": evt,
        "object": "Event",
        "description": "batch.updated",
        "mode": "production",
        "status": "pending",
        "pending_urls": [],
        "completed_urls": [],
        "created_at": "2026-11-26T11:00:00Z",
        "updated_at": "2026-11-26T11:00:00Z",
        "user_id": "user_1",
        "result": {"id": "batch_1", "object": "Batch", "state": "created"},
    }
    return SampleEvent("easypost", f"easypost:{evt}", payload)


def test_configured_event_types_are_ignored_counted_and_kept_out_of_the_dead_letters(
    stack: Stack, ignoring: Path
) -> None:
    invoice = SampleEvent(
        "stripe",
        "stripe:evt_inv0001",
        stripe_event(
            "evt_inv0001",
            "invoice.paid",
            {"id": "in_1", "object": "invoice", "amount_paid": 100},
            1_790_000_000,
        ),
    )
    customer = SampleEvent(
        "stripe",
        "stripe:evt_cus0001",
        stripe_event("evt_cus0001", "customer.created", {"id": "cus_1", "object": "customer"}, 1_790_000_000),
    )
    generic_creation = hubspot(
        {
            **HUBSPOT_TEST_CREATION,
            "subscriptionType": "object.creation",
            "objectTypeId": "0-1",
            "eventId": 101,
        }
    )
    events = [
        invoice,
        customer,
        easypost_batch_event("evt_b0001"),
        hubspot(HUBSPOT_TEST_CREATION),
        generic_creation,
    ]
    queue = stack.make_queue()
    stack.publish(events, queue)
    report = stack.drain(queue)
    assert report.balanced, report.as_dict()
    assert (report.totals.ignored, report.totals.dead_lettered) == (4, 1)
    assert by_check(stack) == {
        "stripe:evt_cus0001": "unknown_event_type"
    }  # not configured: still a dead letter
    ledger = {r["event_id"]: (r["outcome"], r["target_table"]) for r in stack.ledger()}
    assert ledger["stripe:evt_inv0001"] == ("ignored", None)
    stack.publish([invoice, easypost_batch_event("evt_b0002")], queue)  # a redelivery and a new one
    again = stack.drain(queue, wait_s=0.5)
    assert (again.totals.duplicates, again.totals.ignored) == (1, 1), again.as_dict()

    shown = event_status(stack.engine, load_policies())
    assert shown["ignore"] == {
        "hubspot": ["contact.creation"],
        "easypost": ["batch.*"],
        "stripe": ["invoice.*"],
    }
    assert {"source": "stripe", "event_type": "invoice.paid", "count": 1} in shown["ignored"]
    assert ignored_event_counts(stack.engine) == {
        ("easypost", "batch.updated"): 2,
        ("hubspot", "contact.creation"): 1,
        ("hubspot", "object.creation"): 1,
        ("stripe", "invoice.paid"): 1,
    }
    assert Planner().router.ignores("easypost", "batch.created")

    scraped = generate_latest(metrics_registry(WebhookMetrics(), lambda: stack.engine)).decode()
    assert 'integration_events_ignored{event_type="batch.updated",source="easypost"} 2.0' in scraped


def test_without_configuration_those_types_still_dead_letter(stack: Stack) -> None:
    queue = stack.make_queue()
    stack.publish([easypost_batch_event("evt_b0003"), hubspot(HUBSPOT_TEST_CREATION)], queue)
    report = stack.drain(queue)
    assert (report.totals.ignored, report.totals.dead_lettered) == (0, 2)


def test_content_header_is_the_fingerprint_of_the_body() -> None:

    [m] = messages_of_batch(json.dumps([HUBSPOT_TEST_PROPERTY_CHANGE]).encode())
    assert m.headers[CONTENT_HEADER] == body_fingerprint(m.body, volatile_fields("hubspot"))
    retry = messages_of_batch(json.dumps([{**HUBSPOT_TEST_PROPERTY_CHANGE, "attemptNumber": 4}]).encode())[0]
    assert (retry.id, retry.headers[CONTENT_HEADER]) == (m.id, m.headers[CONTENT_HEADER])


def test_contact_change_helper_uses_the_real_key() -> None:
    ev = contact_change(5, "101", "firstname", "A", NOW)
    assert hubspot_event_id(ev.event_id) == "hubspot:5" and ev.event_id.count(":") == 2


def test_a_key_whose_first_event_was_dead_lettered_still_tells_other_content(
    stack: Stack, tmp_path: Path
) -> None:
    """The first event of a key is dead-lettered (unknown property); a later one under that key with other
    content is a key collision with a dead letter of its own, not a redelivery of the first; copies of it
    are duplicates."""
    seed_contacts(tmp_path, ["301"], warehouse_url=stack.warehouse_url)
    first = hubspot_change(7, "301", "favourite_colour", "teal", NOW - timedelta(minutes=1))
    other = {**first, "changeSource": "IMPORT", "sourceId": "import:9"}  # same key fields, other content
    assert hubspot_event_key(first) == hubspot_event_key(other)
    queue = stack.make_queue()
    stack.publish([hubspot(first)], queue)
    assert stack.drain(queue).totals.dead_lettered == 1
    stack.publish([hubspot(other)], queue)
    report = stack.drain(queue, wait_s=0.5)
    assert (report.totals.dead_lettered, report.totals.duplicates) == (1, 0), report.as_dict()
    assert sorted(by_check(stack).values()) == ["key_collision", "unknown_property"]
    for retry in ({**other, "attemptNumber": 2}, {**first, "attemptNumber": 1}):  # retries of both
        stack.publish([hubspot(retry)], queue)
        again = stack.drain(queue, wait_s=0.5)
        assert (again.totals.dead_lettered, again.totals.duplicates) == (0, 1), again.as_dict()
    assert len(stack.dead_letters()) == 2


def test_ignore_patterns_are_validated_and_a_broken_file_does_not_stop_the_drain(
    ignoring: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    router = Router()
    assert router.ignores("stripe", "invoice.paid") and not router.ignores("stripe", "charge.succeeded")
    assert router.ignores("hubspot", "contact.creation") and not router.ignores("easypost", "tracker.updated")
    doc = yaml.safe_load(ignoring.read_text())
    doc["events"] = {"ignore": {"shopify": ["orders.*"]}}  # not a source of ours
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(bad))
    with pytest.raises(PolicyError, match="shopify"):  # checked against the provider registry
        ignore_patterns(load_policies())
    router.refresh()  # keeps the patterns it had
    assert router.ignores("stripe", "invoice.paid")
