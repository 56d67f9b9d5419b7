"""Landing API pages in the inbox: atomic files, the cursor, resuming after a failure, one pull at a time."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration_assets.connectors._retry import HttpRetry, RetriesExhausted
from integration_assets.connectors.landing import CursorStore, PullInProgress, pull_entity, write_jsonl_atomic
from integration_assets.connectors.odoo.client import OdooClient
from integration_assets.errors import TransientError
from integration_assets.ingest import inbox as inbox_mod
from integration_assets.sandbox.fakes._server import Fault
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.settings import get_settings
from tests.connectors.conftest import FAST, inbox_files, landed_records


def odoo_client(fake: FakeOdoo, **kw) -> OdooClient:
    kw.setdefault("retry", FAST)
    return OdooClient(fake.url, fake.db, fake.login, fake.api_key, page_size=4, rng=random.Random(2), **kw)


def seed_products(fake: FakeOdoo, n: int, start: datetime = datetime(2025, 2, 1, tzinfo=UTC)) -> None:
    for i in range(n):
        fake.add(
            "product.product",
            {
                "name": f"P{i}",
                "type": "consu",
                "list_price": 2.0,
                "standard_price": 1.0,
                "categ_id": [1, "All"],
            },
            write_date=start + timedelta(minutes=i),
        )


def test_a_file_is_whole_or_absent_and_the_scan_ignores_part_files(tmp_path: Path) -> None:
    target = tmp_path / "inbox" / "odoo" / "res.partner" / "p.jsonl"

    def records():
        yield {"id": 1}
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_jsonl_atomic(target, records())
    assert list(target.parent.iterdir()) == []
    (target.parent / "q.jsonl.part").write_text('{"id": 1}\n')
    settings = get_settings()
    assert (
        inbox_mod.scan(dataclasses.replace(settings, inbox_dir=tmp_path / "inbox", inbox_settle_seconds=0))
        == []
    )
    assert write_jsonl_atomic(target, [{"id": 1, "name": "Zoë"}, {"id": 2}]) == 2
    assert target.read_text(encoding="utf-8") == '{"id":1,"name":"Zoë"}\n{"id":2}\n'


def test_an_interrupted_pull_keeps_whole_files_and_the_next_one_resumes(odoo: FakeOdoo) -> None:
    seed_products(odoo, 22)
    store = CursorStore()
    calls = iter(range(10_000))
    odoo.fault = lambda req: Fault(503) if next(calls) >= 4 else None  # the ERP goes down after 3 pages
    with odoo_client(odoo, retry=HttpRetry(max_attempts=2, backoff_base=0.01)) as c:
        with pytest.raises(RetriesExhausted):
            pull_entity(c, "product.product", store=store, records_per_file=3)
    first = landed_records(get_settings().inbox_dir, "odoo", "product.product")
    cursor = store.load("odoo", "product.product")
    assert first and len(first) % 3 == 0  # only whole files
    assert cursor.watermark == max(
        datetime.strptime(r["write_date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for r in first
    )
    odoo.fault = None
    with odoo_client(odoo) as c:
        second = pull_entity(c, "product.product", store=store, records_per_file=3)
    assert second.mode == "incremental"
    ids = Counter(r["id"] for r in landed_records(get_settings().inbox_dir, "odoo", "product.product"))
    assert sorted(ids) == list(range(1, 23)) and max(ids.values()) == 1  # nothing lost, nothing twice


def test_a_since_ahead_of_the_cursor_does_not_move_it(odoo: FakeOdoo) -> None:
    seed_products(odoo, 6)
    store = CursorStore()
    with odoo_client(odoo) as c:
        pull_entity(c, "product.product", store=store)
        before = store.load("odoo", "product.product").watermark
        odoo.touch("product.product", [6], at=datetime(2025, 9, 1, tzinfo=UTC))
        ahead = pull_entity(c, "product.product", store=store, since=datetime(2025, 8, 1, tzinfo=UTC))
        assert ahead.records == 1 and not ahead.cursor_saved
        assert store.load("odoo", "product.product").watermark == before
        again = pull_entity(c, "product.product", store=store)  # from the cursor: gets the change again
        assert again.records == 1 and again.cursor_saved
        everything = pull_entity(c, "product.product", store=store, full=True)
        assert everything.records == 6 and everything.mode == "full"


def test_one_pull_per_entity_at_a_time(odoo: FakeOdoo) -> None:
    store = CursorStore()
    with store.lock("odoo", "product.product"), odoo_client(odoo) as c:
        with pytest.raises(PullInProgress) as err:
            pull_entity(c, "product.product", store=store)
    assert isinstance(err.value, TransientError)
    assert inbox_files(get_settings().inbox_dir, "odoo", "product.product") == []
