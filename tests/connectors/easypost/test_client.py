"""The EasyPost client against the fake over real HTTP: one shipment and one label per reference whatever is
lost or retried, EasyPost's errors as terminal errors naming code and field, transient faults retried."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from integration_assets.connectors._retry import RetriesExhausted
from integration_assets.connectors.easypost import (
    EasyPostAuthError,
    EasyPostClient,
    EasyPostRejected,
    NoRates,
    select_rate,
)
from integration_assets.errors import TerminalError, TransientError
from integration_assets.sandbox.fakes._server import Fault
from integration_assets.sandbox.fakes.easypost import FakeEasyPost

from .conftest import FAST, FROM, PARCEL, SHORT, TO

MakeClient = Callable[..., EasyPostClient]
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def _create(client: EasyPostClient, reference: str) -> dict:
    return client.create_shipment(
        to_address=dict(TO), from_address=dict(FROM), parcel=dict(PARCEL), reference=reference
    )


def _found_id(client: EasyPostClient, reference: str, since: datetime) -> str | None:
    found = client.find_shipment_by_reference(reference, created_after=since)
    return None if found is None else found["id"]


def test_create_then_buy_the_cheapest_label(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    shipment = _create(client, "easypost_label:101")
    assert shipment["id"].startswith("shp_") and shipment["reference"] == "easypost_label:101"
    assert len({(r["carrier"], r["service"]) for r in shipment["rates"]}) >= 5
    cheapest = select_rate(shipment)
    assert float(cheapest["rate"]) == min(float(r["rate"]) for r in shipment["rates"])
    priority = select_rate(shipment, carrier="usps", service="PRIORITY")  # case-insensitive, like lowest_rate
    assert (priority["carrier"], priority["service"]) == ("USPS", "Priority")

    bought = client.buy(shipment["id"], priority["id"])
    assert bought["tracking_code"] and bought["postage_label"]["label_url"].endswith(".png")
    assert bought["selected_rate"]["id"] == priority["id"]
    assert client.get_shipment(shipment["id"])["tracking_code"] == bought["tracking_code"]
    assert easypost.shipments_created == 1 and easypost.labels_bought("easypost_label:101") == 1
    # the wire format: Bearer key, the body wrapped in the object name
    create = next(r for r in easypost.requests if r.method == "POST" and r.path == "/v2/shipments")
    assert create.headers["Authorization"] == f"Bearer {easypost.api_key}"
    assert create.body["shipment"]["reference"] == "easypost_label:101"


def test_a_lost_create_answer_is_found_by_reference_not_created_twice(
    easypost: FakeEasyPost, make_client: MakeClient
) -> None:
    client = make_client()
    _create(client, "other-chain")  # another shipment in the list, newer ones come after it
    easypost.commit_then_drop("/v2/shipments")
    shipment = _create(client, "easypost_label:202")

    stored = easypost.shipments_with_reference("easypost_label:202")
    assert [s["id"] for s in stored] == [shipment["id"]] and shipment["rates"]
    assert easypost.shipments_created == 2
    creates = [r for r in easypost.requests if r.method == "POST" and r.path == "/v2/shipments"]
    assert len(creates) == 2 and creates[1].fault == "commit_then_drop"  # sent once for this reference
    # the caller that crashed before recording the id finds it the same way
    assert _found_id(client, "easypost_label:202", LONG_AGO) == shipment["id"]
    assert (
        client.find_shipment_by_reference("easypost_label:2", created_after=LONG_AGO) is None
    )  # exact match


def test_a_5xx_before_the_create_retries_into_exactly_one_shipment(
    easypost: FakeEasyPost, make_client: MakeClient
) -> None:
    easypost.fail_next(500, times=2, path="/v2/shipments", method="POST")
    shipment = _create(make_client(), "easypost_label:303")
    assert easypost.shipments_with_reference("easypost_label:303") == [shipment]
    assert [(r.method, r.status) for r in easypost.requests] == [
        ("POST", 500),
        ("GET", 200),  # a 500 may come after the commit: look before sending it again
        ("POST", 500),
        ("GET", 200),
        ("POST", 201),
    ]


def test_the_lookup_pages_back_to_created_after(make_client: MakeClient) -> None:
    now = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()]
    with FakeEasyPost(clock=lambda: now[0]) as fake:
        assert isinstance(fake, FakeEasyPost)
        client = make_client(base_url=fake.url, api_key=fake.api_key)
        _create(client, "old-chain")  # before the window
        now[0] += 3600
        target = _create(client, "chain-target")
        for i in range(130):  # newer shipments push the target onto the second page
            now[0] += 1
            _create(client, f"chain-{i}")
        since = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
        assert _found_id(client, "chain-target", since) == target["id"]
        assert client.find_shipment_by_reference("old-chain", created_after=since) is None
        lists = [r for r in fake.requests if r.method == "GET" and r.path == "/v2/shipments"]
        assert lists[-1].query.get("before_id") and lists[-1].query["start_datetime"] == [
            "2026-03-01T12:30:00Z"
        ]


def test_buying_twice_gives_one_label(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    shipment = _create(client, "easypost_label:404")
    first = client.buy(shipment["id"], select_rate(shipment)["id"])
    again = client.buy(shipment["id"], select_rate(shipment, carrier="UPS")["id"])  # another rate: same label
    assert again["tracking_code"] == first["tracking_code"]
    assert again["selected_rate"]["id"] == first["selected_rate"]["id"]
    assert easypost.labels_bought("easypost_label:404") == 1
    assert any(r.status == 422 for r in easypost.requests if r.path.endswith("/buy"))  # POSTAGE.EXISTS


def test_a_lost_buy_answer_gives_one_label(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    shipment = _create(client, "easypost_label:505")
    easypost.commit_then_drop("/v2/shipments/*/buy")
    bought = client.buy(shipment["id"], select_rate(shipment)["id"])
    assert bought["tracking_code"] and bought["postage_label"]["label_url"]
    assert easypost.labels_bought("easypost_label:505") == 1


def test_a_rejected_address_is_terminal_with_code_and_field(
    easypost: FakeEasyPost, make_client: MakeClient
) -> None:
    client = make_client()
    assert client.verify_address(dict(TO))["verifications"]["delivery"]["success"] is True
    easypost.reject_address("94104")
    with pytest.raises(EasyPostRejected) as err:
        client.verify_address(dict(TO))
    assert isinstance(err.value, TerminalError) and err.value.status == 422
    assert err.value.code == "ADDRESS.VERIFY.FAILURE" and err.value.field == "street1"
    assert "House number is missing" in str(err.value) and "417 Montgomery" not in str(err.value)
    assert sum(r.path == "/v2/addresses" for r in easypost.requests) == 2  # not retried
    with pytest.raises(NoRates):  # no carrier rates a shipment to it either
        _create(client, "easypost_label:606")


def test_no_rates_is_terminal(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    easypost.no_rates()
    with pytest.raises(NoRates) as err:
        _create(client, "easypost_label:707")
    assert isinstance(err.value, TerminalError) and err.value.code == "SHIPMENT.RATES.UNAVAILABLE"
    assert err.value.shipment_id and {c for c, _ in err.value.messages} == {"USPS", "UPS", "FedEx"}
    easypost.no_rates(False)
    assert client.rerate(err.value.shipment_id)  # the same shipment rates later
    with pytest.raises(NoRates):
        select_rate(client.get_shipment(err.value.shipment_id), carrier="DHLExpress")


def test_429_waits_as_long_as_retry_after_says(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    easypost.rate_limit(1, retry_after=1)
    shipment = _create(make_client(), "easypost_label:808")
    limited, created = [r for r in easypost.requests if r.method == "POST"]
    assert (
        limited.status == 429
        and created.status == 201
        and created.body["shipment"]["reference"] == shipment["reference"]
    )
    assert limited.not_before is not None and created.at >= limited.not_before
    assert easypost.shipments_created == 1
    assert not any(r.method == "GET" for r in easypost.requests)  # a 429 created nothing: no lookup


def test_an_outage_is_transient_after_the_attempts_and_creates_nothing(
    easypost: FakeEasyPost, make_client: MakeClient
) -> None:
    client = make_client()
    easypost.down()
    with pytest.raises(RetriesExhausted) as err:
        _create(client, "easypost_label:909")
    assert isinstance(err.value, TransientError) and err.value.last_status == 503
    assert err.value.attempts == FAST.max_attempts
    assert easypost.shipments_created == 0
    easypost.up()
    assert _create(client, "easypost_label:909")["reference"] == "easypost_label:909"
    assert easypost.shipments_created == 1


def test_a_timeout_on_a_read_is_retried(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client(timeout=0.3)
    shipment = _create(client, "easypost_label:1001")
    easypost.slow(0.6, path="/v2/shipments/*")
    with pytest.raises(RetriesExhausted, match="timed out"):
        client.get_shipment(shipment["id"])
    easypost.slow(0, path="/v2/shipments/*")
    assert client.get_shipment(shipment["id"])["id"] == shipment["id"]


def test_refund_is_idempotent_in_effect(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    shipment = _create(client, "easypost_label:1101")
    client.buy(shipment["id"], select_rate(shipment)["id"])
    assert client.refund(shipment["id"])["refund_status"] == "submitted"
    assert client.refund(shipment["id"])["refund_status"] == "submitted"
    assert easypost.refunds[shipment["id"]] == 1
    unbought = _create(client, "easypost_label:1102")
    with pytest.raises(EasyPostRejected, match="SHIPMENT.REFUND.UNAVAILABLE"):
        client.refund(unbought["id"])


def test_eight_threads_share_one_client(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    easypost.commit_then_drop("/v2/shipments", times=2)
    easypost.commit_then_drop("/v2/shipments/*/buy", times=2)
    errors: list[BaseException] = []

    def chain(n: int) -> None:
        try:
            for i in range(3):
                ref = f"easypost_label:{n}-{i}"
                shipment = _create(client, ref)
                client.buy(shipment["id"], select_rate(shipment)["id"])
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=chain, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert easypost.shipments_created == 24 and easypost.labels_bought() == 24
    assert easypost.duplicates() == {}


def test_the_key_never_shows(
    easypost: FakeEasyPost, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "EZTK-wrong-key-0123456789"
    with pytest.raises(EasyPostAuthError) as err:
        make_client(api_key=wrong).get_shipment("shp_1")
    assert err.value.status == 401 and "EASYPOST_API_KEY" in str(err.value) and wrong not in str(err.value)

    client = make_client()
    easypost.fault = lambda req: Fault(
        422, {"error": {"code": "X", "message": f"key {easypost.api_key} bad"}}
    )
    with pytest.raises(EasyPostRejected) as rejected:
        client.get_shipment("shp_1")
    assert easypost.api_key not in str(rejected.value) and "[REDACTED]" in str(rejected.value)
    easypost.fault = lambda req: Fault(503, {"error": {"code": "DOWN", "message": easypost.api_key}})
    with pytest.raises(RetriesExhausted) as exhausted:
        client.get_shipment("shp_1")
    assert easypost.api_key not in str(exhausted.value)
    assert easypost.api_key not in repr(client) and easypost.api_key not in repr(client.http)
    assert caplog.records and all(easypost.api_key not in r.getMessage() for r in caplog.records)


def test_from_settings(easypost: FakeEasyPost, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASYPOST_BASE_URL", f"{easypost.url}/v2/")
    monkeypatch.setenv("EASYPOST_API_KEY", easypost.api_key)
    with EasyPostClient.from_settings(retry=FAST, timeout=SHORT) as client:
        assert client.verify_address(dict(TO))["id"].startswith("adr_")
    monkeypatch.delenv("EASYPOST_API_KEY")
    with pytest.raises(EasyPostAuthError, match="EASYPOST_API_KEY"):
        EasyPostClient.from_settings()


def test_created_after_bounds_the_walk(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    _create(client, "chain-x")
    future = datetime.now(UTC) + timedelta(hours=1)
    assert client.find_shipment_by_reference("chain-x", created_after=future) is None


def test_the_fake_speaks_the_wire_format(easypost: FakeEasyPost) -> None:
    with httpx.Client(base_url=easypost.url, auth=(easypost.api_key, "")) as raw:  # Basic, key as user
        page = raw.get("/v2/shipments", params={"page_size": 101})
        assert page.status_code == 422 and page.json()["error"]["errors"][0]["field"] == "page_size"
        missing = raw.post(
            "/v2/shipments", json={"shipment": {"to_address": dict(TO), "from_address": dict(FROM)}}
        )
        assert missing.status_code == 422 and missing.json()["error"]["errors"][0]["field"] == "parcel.weight"
        assert raw.get("/v2/shipments/shp_unknown").json()["error"]["code"] == "NOT_FOUND"
        assert raw.get("/v2/shipments").json() == {"shipments": [], "has_more": False}
    with httpx.Client(base_url=easypost.url) as anonymous:
        assert anonymous.get("/v2/shipments").status_code == 401


def test_a_hanging_outage_times_out(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client(timeout=0.2, max_attempts=2)
    easypost.down(hang=True)
    with pytest.raises(RetriesExhausted, match="timed out"):
        client.verify_address(dict(TO))
    easypost.up()
    assert client.verify_address(dict(TO))["id"]


def test_the_fake_lists_with_filters(easypost: FakeEasyPost, make_client: MakeClient) -> None:
    client = make_client()
    first, second, third = (_create(client, f"chain-{i}") for i in range(3))
    client.buy(second["id"], select_rate(second)["id"])
    assert [s["id"] for s in client.list_shipments(purchased=True)["shipments"]] == [second["id"]]
    page = client.list_shipments(page_size=1)
    assert [s["id"] for s in page["shipments"]] == [third["id"]] and page["has_more"] is True
    rest = client.list_shipments(page_size=2, before_id=third["id"])
    assert [s["id"] for s in rest["shipments"]] == [second["id"], first["id"]] and rest["has_more"] is False
    with httpx.Client(base_url=easypost.url, headers={"Authorization": f"Bearer {easypost.api_key}"}) as raw:
        newer = raw.get("/v2/shipments", params={"after_id": first["id"]}).json()["shipments"]
        assert [s["id"] for s in newer] == [third["id"], second["id"]]
