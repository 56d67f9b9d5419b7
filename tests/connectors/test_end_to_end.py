"""End to end: pull from the fakes → JSONL in the inbox → ``sync.run_pending()`` loads them with the existing
``*.api`` contracts (SQLite and PostgreSQL)."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from integration_assets.cli.sync import run_pending
from integration_assets.connectors.hubspot.client import HubSpotClient
from integration_assets.connectors.landing import pull_entity
from integration_assets.connectors.odoo.client import MODELS, OdooClient
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.warehouse.db import get_engine
from tests.connectors.conftest import FAST


def _rows(url: str, table: str, system: str) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE source_system = :s"), {"s": system}
        ).scalar()


def _by_entity(result) -> dict:
    return {e["entity"]: e for e in result.per_entity()}


def test_hubspot_api_pull_loads_through_the_api_contracts(warehouse_url: str, hubspot: FakeHubSpot) -> None:
    hubspot.seed(companies=6, contacts=45, deals=9)
    with HubSpotClient(
        hubspot.token, hubspot.url, retry=FAST, page_limit=20, search_min_interval=0, rng=random.Random(1)
    ) as c:
        for entity in c.entities:
            pull_entity(c, entity)
        result = run_pending()
        assert result.ok, result.runs
        loaded = _by_entity(result)
        assert {e: loaded[e]["rows_inserted"] for e in loaded} == {"companies": 6, "contacts": 45, "deals": 9}
        assert all(loaded[e]["rows_quarantined"] == 0 and loaded[e]["rejected"] == 0 for e in loaded)
        assert (
            _rows(warehouse_url, "contacts", "hubspot"),
            _rows(warehouse_url, "companies", "hubspot"),
            _rows(warehouse_url, "deals", "hubspot"),
        ) == (45, 6, 9)

        # Incremental: three contacts change; only they are pulled, and they update (association kept).
        hubspot.touch("contacts", ["1010", "1011", "1012"], lastname="Changed")
        report = pull_entity(c, "contacts")
    assert report.records == 3
    result = run_pending()
    contacts = _by_entity(result)["contacts"]
    assert (contacts["rows_read"], contacts["rows_updated"], contacts["rows_inserted"]) == (3, 3, 0)
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT source_id, last_name, company_id FROM contacts WHERE source_id IN "
                "('1010', '1011', '1012') ORDER BY source_id"
            )
        ).all()
    assert [r.last_name for r in rows] == ["Changed"] * 3
    assert [r.company_id for r in rows] == [
        (hubspot.objects["contacts"][r.source_id]["companies"] or [None])[0] for r in rows
    ]
    assert _rows(warehouse_url, "contacts", "hubspot") == 45


# SQLite only: the loader's Postgres path is covered by the HubSpot case above and the load tests; this keeps
# the connector suite inside its time budget (one run per entity, about 2 s each).
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_odoo_api_pull_loads_through_the_api_contracts(warehouse_url: str, odoo: FakeOdoo) -> None:
    odoo.seed(partners=9, products=4, orders=6, lines_per_order=2, invoices=3)
    with OdooClient(odoo.url, odoo.db, odoo.login, odoo.api_key, retry=FAST, page_size=5) as c:
        for model in MODELS:
            pull_entity(c, model)
    result = run_pending()
    assert result.ok, result.runs
    loaded = _by_entity(result)
    assert {e: loaded[e]["rows_inserted"] for e in loaded} == {
        "res.partner": 9,
        "product.product": 4,
        "sale.order": 6,
        "sale.order.line": 12,
        "account.move": 3,
    }
    assert all(loaded[e]["rows_quarantined"] == 0 for e in loaded)
    counts = {
        t: _rows(warehouse_url, t, "odoo")
        for t in ("customers", "products", "sales_orders", "sales_order_lines", "invoices")
    }
    assert counts == {
        "customers": 9,
        "products": 4,
        "sales_orders": 6,
        "sales_order_lines": 12,
        "invoices": 3,
    }
