"""GDPR erasure through HubSpot's ``contact.privacyDeletion`` webhook: receiver's messages → queue → drain, on
SQL queue × SQLite, SQL queue × Postgres and RabbitMQ × Postgres. The canary contact's personal data, put
there by property-change events and a dead-lettered event, is nowhere afterwards; an older property change
arriving after the erasure, and a later poison event of the contact, do not bring it back."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.observability.logging import JsonFormatter
from integration_assets.sandbox.events import SampleEvent, hubspot_archive
from integration_assets.warehouse.schema import privacy_erasures
from tests.events.conftest import NOW, Stack, contact_change, seed_contacts, stack  # noqa: F401
from tests.privacy.support import CANARY_EMAIL, CANARY_FIRST, CANARY_ID, CANARY_LAST, CANARY_PHONE, scan


def privacy_deletion(event_id: int, contact: str, occurred_ms_ago: int = 0) -> SampleEvent:
    payload = hubspot_archive(
        event_id, contact, NOW - timedelta(milliseconds=occurred_ms_ago), "contact.privacyDeletion"
    )
    return SampleEvent("hubspot", f"hubspot:{event_id}", payload, object_id=contact)


def test_privacy_deletion_webhook_erases_everywhere_and_stays_erased(
    stack: Stack,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    isolated_env: Path,
    caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG, logger="integration_assets")
    json_log = io.StringIO()
    handler = logging.StreamHandler(json_log)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        queue = stack.make_queue()  # one consumer: a second one would leave the first holding deliveries
        seed_contacts(tmp_path, [CANARY_ID, "7002"], warehouse_url=stack.warehouse_url)
        hour = NOW - timedelta(hours=1)
        stack.publish(
            [
                contact_change(901, CANARY_ID, "email", CANARY_EMAIL, hour),
                contact_change(902, CANARY_ID, "firstname", CANARY_FIRST, hour),
                contact_change(903, CANARY_ID, "lastname", CANARY_LAST, hour),
                contact_change(904, CANARY_ID, "phone", CANARY_PHONE, hour),
                # A property the contract does not map: dead-lettered with its value.
                contact_change(905, CANARY_ID, "message", f"{CANARY_FIRST} wrote from {CANARY_EMAIL}", hour),
                contact_change(906, "7002", "firstname", "Ann", hour),
            ]
        )
        stack.drain(queue)
        with stack.engine.connect() as conn:
            assert (
                conn.execute(
                    sa.text("SELECT email FROM contacts WHERE source_id = :i"), {"i": CANARY_ID}
                ).scalar_one()
                == CANARY_EMAIL
            )
        assert scan(stack.warehouse_url, isolated_env), "the events put the canary in the warehouse"

        stack.publish([privacy_deletion(910, CANARY_ID)])
        report = stack.drain(queue)
        assert report.totals.applied == 1 and report.totals.dead_lettered == 0
        rows = {r["source_id"]: r for r in stack.rows("contacts")}
        erased = rows[CANARY_ID]
        assert (erased["email"], erased["first_name"], erased["last_name"], erased["phone"]) == (None,) * 4
        assert erased["erased_at"] is not None and erased["lifecycle_stage"] == "lead"
        assert rows["7002"]["first_name"] == "Ann" and rows["7002"]["email"] == "c7002@example.com"
        with stack.engine.connect() as conn:
            audit = conn.execute(sa.select(privacy_erasures)).one()
        stores = json.loads(audit.stores)
        assert audit.status == "done" and audit.requested_via == "webhook" and audit.source_id == CANARY_ID
        assert stores["contacts"] == 1 and stores["dead_letters"] == 1
        assert [r for r in stack.ledger() if r["event_type"] == "contact.privacyDeletion"][0][
            "outcome"
        ] == "applied"
        assert (
            scan(stack.warehouse_url, isolated_env, [("log", caplog.text), ("json log", json_log.getvalue())])
            == []
        )

        # HubSpot's retries are out of order: a change that happened before the erasure arrives after it, a
        # newer one of a non-personal property still applies, and a poison event of the contact is
        # dead-lettered without its payload.
        stack.publish(
            [
                contact_change(920, CANARY_ID, "email", CANARY_EMAIL, NOW - timedelta(minutes=30)),
                contact_change(921, CANARY_ID, "lifecyclestage", "customer", NOW + timedelta(minutes=1)),
                contact_change(
                    922, CANARY_ID, "message", f"again {CANARY_PHONE}", NOW + timedelta(minutes=2)
                ),
                privacy_deletion(910, CANARY_ID),  # HubSpot redelivering the erasure request: a duplicate
            ]
        )
        stack.drain(queue)
        erased = {r["source_id"]: r for r in stack.rows("contacts")}[CANARY_ID]
        assert erased["email"] is None and erased["lifecycle_stage"] == "customer"
        with stack.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(privacy_erasures)).scalar_one() == 1
        assert (
            scan(stack.warehouse_url, isolated_env, [("log", caplog.text), ("json log", json_log.getvalue())])
            == []
        )
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_privacy_deletion_posted_to_the_receiver_in_one_delivery_with_a_change(
    stack: Stack,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    isolated_env: Path,
    caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    """Through the HTTP receiver (signature checked, queued), in one HubSpot delivery: a change of the
    canary's e-mail and the privacyDeletion. The drain applies the change and erases in the same batch."""
    import httpx

    from integration_assets.webhooks.app import create_app
    from tests.webhooks.conftest import HUBSPOT_URL, hubspot_headers, test_config

    caplog.set_level(logging.DEBUG, logger="integration_assets")
    seed_contacts(tmp_path, [CANARY_ID], warehouse_url=stack.warehouse_url)
    change = contact_change(930, CANARY_ID, "email", CANARY_EMAIL, NOW - timedelta(minutes=5)).payload
    body = json.dumps([change, privacy_deletion(931, CANARY_ID).payload]).encode()
    app = create_app(queue_factory=stack.make_queue, config=test_config())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        response = await client.post(
            "/webhooks/hubspot", content=body, headers=hubspot_headers(body, HUBSPOT_URL)
        )
    assert response.status_code < 300, response.text
    queue = stack.make_queue()
    report = stack.drain(queue)
    assert report.totals.applied == 2 and report.totals.dead_lettered == 0
    erased = {r["source_id"]: r for r in stack.rows("contacts")}[CANARY_ID]
    assert erased["email"] is None and erased["erased_at"] is not None
    with stack.engine.connect() as conn:
        audit = conn.execute(sa.select(privacy_erasures)).one()
    assert audit.requested_via == "webhook" and audit.status == "done"
    assert scan(stack.warehouse_url, isolated_env, [("log", caplog.text)]) == []
