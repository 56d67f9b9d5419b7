"""Odoo connector against the local fake: search_read paging, incremental by write_date, JSON-RPC errors."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from integration_assets.connectors._retry import HttpRetry, RetriesExhausted
from integration_assets.connectors.landing import pull_entity
from integration_assets.connectors.odoo.client import (
    MODELS,
    OdooAccessDenied,
    OdooAccessError,
    OdooClient,
    OdooRpcError,
)
from integration_assets.errors import TerminalError, TransientError
from integration_assets.sandbox.fakes._server import Fault
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.settings import get_settings
from tests.connectors.conftest import FAST, inbox_files, landed_records


def client(fake: FakeOdoo, *, api_key: str | None = None, **kw) -> OdooClient:
    kw.setdefault("retry", FAST)
    kw.setdefault("page_size", 4)
    return OdooClient(fake.url, fake.db, fake.login, api_key or fake.api_key, rng=random.Random(5), **kw)


def inbox() -> Path:
    return get_settings().inbox_dir


def execute_calls(fake: FakeOdoo) -> list[list]:
    return [
        r.body["params"]["args"]
        for r in fake.requests
        if r.status == 200 and r.body["params"]["method"] == "execute_kw"
    ]


def test_full_pull_pages_to_the_end(odoo: FakeOdoo) -> None:
    odoo.seed(partners=12, products=6, orders=8, lines_per_order=3, invoices=5)
    with client(odoo) as c:
        reports = {m: pull_entity(c, m) for m in MODELS}
    counts = {m: len(landed_records(inbox(), "odoo", m)) for m in MODELS}
    assert counts == {
        "res.partner": 12,
        "product.product": 6,
        "sale.order": 8,
        "sale.order.line": 24,
        "account.move": 5,
    }  # archived partner included, the misc journal entry not
    assert all(r.mode == "full" and r.cursor_saved for r in reports.values())
    partners = landed_records(inbox(), "odoo", "res.partner")
    assert any(p["active"] is False for p in partners)
    assert all(isinstance(p["write_date"], str) for p in partners)
    line = landed_records(inbox(), "odoo", "sale.order.line")[0]
    assert isinstance(line["order_id"], list) and len(line["order_id"]) == 2  # many2one as sent
    db, uid, key, model, method, args, kwargs = execute_calls(odoo)[0]
    assert (db, uid, model, method) == ("odoo", 7, "res.partner", "search_read")
    assert kwargs["order"] == "write_date asc, id asc" and kwargs["limit"] == 4 and kwargs["offset"] == 0
    assert kwargs["context"] == {"active_test": False}
    assert set(kwargs["fields"]) >= {"name", "email", "is_company", "write_date"}
    later = [a for a in execute_calls(odoo) if a[3] == "sale.order.line"][1]
    assert later[5][0] and later[5][0][-1][:2] == ["write_date", ">="]  # restarted from the last write_date


def test_second_pull_gets_only_the_changed_records(odoo: FakeOdoo) -> None:
    odoo.seed()
    with client(odoo) as c:
        pull_entity(c, "sale.order")
        odoo.touch("sale.order", [2, 5], state="sale")
        second = pull_entity(c, "sale.order")
        third = pull_entity(c, "sale.order")
    got = [r for f in second.files for r in map(__import__("json").loads, Path(f).read_text().splitlines())]
    assert sorted(r["id"] for r in got) == [2, 5] and second.mode == "incremental"
    assert third.records == 0
    domain = execute_calls(odoo)[-1][5][0]
    assert domain == [["write_date", ">=", domain[0][2]]]


def test_many_records_in_one_second_are_paged_through_once(odoo: FakeOdoo) -> None:
    same = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    for i in range(11):
        odoo.add(
            "product.product",
            {
                "name": f"P{i}",
                "type": "consu",
                "list_price": 1.0,
                "standard_price": 1.0,
                "categ_id": [1, "All"],
            },
            write_date=same,
        )
    with client(odoo) as c:
        report = pull_entity(c, "product.product")
    ids = [r["id"] for r in landed_records(inbox(), "odoo", "product.product")]
    assert sorted(ids) == list(range(1, 12)) and report.records == 11
    assert any(a[6]["offset"] > 0 for a in execute_calls(odoo))


def test_a_wrong_api_key_is_terminal_and_never_shown(
    odoo: FakeOdoo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    odoo.seed()
    with client(odoo, api_key="wrong-key-123456") as c:
        with pytest.raises(OdooAccessDenied) as err:
            pull_entity(c, "res.partner")
    msg = str(err.value)
    assert isinstance(err.value, TerminalError)
    assert "bot@example.com" in msg and "'odoo'" in msg and "ODOO_API_KEY" in msg
    assert "wrong-key-123456" not in msg and "wrong-key-123456" not in caplog.text
    assert len(odoo.requests) == 1  # authenticate only, not retried
    assert inbox_files(inbox(), "odoo", "res.partner") == []


def test_access_denied_during_a_pull_is_terminal(odoo: FakeOdoo, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    odoo.seed()
    odoo.fail_next(
        "odoo.exceptions.AccessDenied", "Access Denied", when=lambda p: p.get("method") == "execute_kw"
    )
    with client(odoo) as c:
        with pytest.raises(OdooAccessDenied, match="AccessDenied: Access Denied") as err:
            pull_entity(c, "sale.order")
    assert odoo.api_key not in str(err.value) and odoo.api_key not in caplog.text
    assert len(odoo.requests) == 2  # authenticate, then one execute_kw: no retry


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("odoo.exceptions.AccessError", OdooAccessError),
        ("odoo.exceptions.ValidationError", OdooRpcError),
        ("builtins.ValueError", OdooRpcError),
    ],
)
def test_other_server_errors_are_terminal(odoo: FakeOdoo, name: str, error: type) -> None:
    odoo.seed()
    odoo.fail_next(
        name,
        "You are not allowed to access 'Sales Order' (sale.order) records.",
        when=lambda p: p.get("method") == "execute_kw",
    )
    with client(odoo) as c:
        with pytest.raises(error) as err:
            pull_entity(c, "sale.order")
    assert isinstance(err.value, TerminalError) and name.rsplit(".", 1)[-1] in str(err.value)
    assert "Traceback" not in str(err.value)


def test_session_expired_and_5xx_are_transient_and_retried(odoo: FakeOdoo) -> None:
    odoo.seed(orders=3, lines_per_order=0, partners=3, products=1, invoices=0)
    odoo.fail_next(
        "odoo.http.SessionExpiredException", "Session expired", when=lambda p: p.get("method") == "execute_kw"
    )
    sent = iter(range(1000))
    odoo.fault = lambda req: (
        Fault(502, b"Bad Gateway", {"Content-Type": "text/html"}) if next(sent) == 2 else None
    )
    with client(odoo) as c:
        report = pull_entity(c, "sale.order")
    assert report.records == 3
    # authenticate; search_read -> code 100 (HTTP 200); search_read -> 502; search_read -> the page
    assert [r.status for r in odoo.requests] == [200, 200, 502, 200]
    assert [r.body["params"]["method"] for r in odoo.requests] == ["authenticate"] + ["execute_kw"] * 3


def test_a_slow_odoo_times_out_then_fails_cleanly(odoo: FakeOdoo) -> None:
    odoo.seed()
    odoo.latency = 1.0
    statuses: list[int | None] = []
    with client(
        odoo,
        timeout=httpx.Timeout(0.2, connect=1.0),
        retry=HttpRetry(max_attempts=2, backoff_base=0.01),
        recorder=statuses.append,
    ) as c:
        with pytest.raises(RetriesExhausted) as err:
            pull_entity(c, "res.partner")
    assert isinstance(err.value, TransientError) and "timed out" in str(err.value)
    assert statuses == [None, None] and inbox_files(inbox(), "odoo", "res.partner") == []
