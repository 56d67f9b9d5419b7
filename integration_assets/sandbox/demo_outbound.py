"""The demo's outbound chain (issue 12): a handful of HubSpot deals won → Odoo orders with stock reserved →
EasyPost labels → tracking written back to the Odoo pickings and the HubSpot deals, plus one chain the
demo's Odoo holds by making a field required (dead-lettered, stage ``outbound``).

Everything external is an in-process fake (``sandbox/fakes``) started by the demo: no network. The deals get
into the warehouse the production way (an API pull from the HubSpot fake, then the load), and are won the
production way: signed ``deal.propertyChange`` webhooks (dealstage → closedwon) posted to the real receiver,
drained into the ``deals`` table, where the merge's capture writes the outbox; then the relay and the steps.

:func:`seed_world` fills the fakes with companies, partners, products and deals with line items; the
outbound benchmark (bench/outbound.py) builds its worlds with it too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

WON_STAGE = "closedwon"
OPEN_STAGE = "contractsent"
# Demo deals live in their own id range, apart from the batch sample's (15_000_000_000 + ...).
DEMO_DEAL_BASE = 41_000_000_000
DEMO_COMPANY_BASE = 42_000_000_000
# The field the demo's Odoo starts requiring on sale.order (a Studio field an Odoo admin made mandatory),
# and the contract line that supplies it.
REQUIRED_FIELD = "x_studio_sales_channel"
REQUIRED_VALUE = "hubspot"

_CITIES = (
    ("388 Townsend St", "San Francisco", "CA", "94107"),
    ("1 Market St", "San Francisco", "CA", "94105"),
    ("500 Pine St", "Seattle", "WA", "98101"),
    ("200 Congress Ave", "Austin", "TX", "78701"),
    ("77 Massachusetts Ave", "Cambridge", "MA", "02139"),
    ("1600 Amphitheatre Pkwy", "Mountain View", "CA", "94043"),
    ("410 Terry Ave N", "Seattle", "WA", "98109"),
    ("233 S Wacker Dr", "Chicago", "IL", "60606"),
)
_NAMES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne")
_PRODUCTS = (
    ("Standing desk", 540.0),
    ("Ergonomic chair", 329.0),
    ("Monitor arm", 89.0),
    ("Docking station", 215.0),
    ("Desk lamp", 45.0),
    ("Cable tray", 19.5),
    ("Acoustic panel", 120.0),
    ("Whiteboard", 160.0),
)
US = [233, "United States"]  # res.country id and name in a stock Odoo database


@dataclass(frozen=True)
class SeededDeal:
    deal_id: str
    company_id: str
    partner_id: int
    amount: float
    skus: tuple[str, ...]


def seed_world(
    hubspot: Any,
    odoo: Any,
    easypost: Any,
    *,
    n: int,
    rng: random.Random,
    deal_id_base: int = DEMO_DEAL_BASE,
    company_id_base: int = DEMO_COMPANY_BASE,
    products: int = len(_PRODUCTS),
    deals_per_company: int = 3,
    modified: datetime | None = None,
) -> list[SeededDeal]:
    """Fill the fakes with ``n`` open deals (stage contractsent), each with a company linked to an Odoo
    partner that has a US address (the label's destination) and 1–3 line items whose SKUs are Odoo products.
    The deal amount is the sum of its lines, so the order matches the deal. Deterministic for one ``rng``."""
    modified = modified or datetime.now(UTC) - timedelta(minutes=30)
    codes = []
    for i in range(products):
        name, price = _PRODUCTS[i % len(_PRODUCTS)]
        code = f"SKU-{i + 1:04d}"
        odoo.add(
            "product.product",
            {"default_code": code, "name": name, "list_price": price, "type": "product", "active": True},
        )
        codes.append((code, name, price))
    seeded: list[SeededDeal] = []
    company: tuple[str, int] | None = None
    for i in range(n):
        if i % deals_per_company == 0:
            k = i // deals_per_company
            name = f"{_NAMES[k % len(_NAMES)]} {k + 1:04d}"
            street, city, state, zip_code = _CITIES[k % len(_CITIES)]
            domain = f"{name.lower().replace(' ', '-')}.example.com"
            partner_id = odoo.add(
                "res.partner",
                {
                    "name": f"{name} Inc.",
                    "is_company": True,
                    "street": street,
                    "city": city,
                    "zip": zip_code,
                    "country_id": US,
                    "email": f"shipping@{domain}",
                    "phone": f"+1 415 555 {k % 10_000:04d}",
                    "active": True,
                },
            )
            company_id = hubspot.add(
                "companies",
                {
                    "name": f"{name} Inc.",
                    "domain": domain,
                    "country": "United States",
                    "odoo_partner_id": str(partner_id),
                },
                modified=modified,
                created=modified - timedelta(days=60),
                record_id=str(company_id_base + k),
            )
            company = (company_id, partner_id)
        assert company is not None
        lines = [rng.choice(codes) for _ in range(rng.choice((1, 1, 2, 3)))]
        items = []
        for code, pname, price in dict.fromkeys(lines):
            qty = rng.choice((1, 1, 2, 4, 10))
            items.append({"sku": code, "name": pname, "quantity": qty, "price": price})
        amount = round(sum(x["quantity"] * x["price"] for x in items), 2)
        deal_id = hubspot.add(
            "deals",
            {
                "dealname": f"{company[0]} - Office refit {i + 1}",
                "dealstage": OPEN_STAGE,
                "pipeline": "default",
                "amount": f"{amount:.2f}",
                "closedate": (modified + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "deal_currency_code": "USD",
            },
            associations=[company[0]],
            modified=modified,
            created=modified - timedelta(days=10),
            record_id=str(deal_id_base + i),
        )
        add_line_items(hubspot, deal_id, items)
        seeded.append(SeededDeal(deal_id, company[0], company[1], amount, tuple(x["sku"] for x in items)))
    return seeded


def add_line_items(hubspot: Any, deal_id: str, items: Sequence[dict[str, Any]]) -> None:
    """Line items of ``deal_id`` in the HubSpot fake (values as HubSpot sends them: strings)."""
    hubspot.add_line_items(
        deal_id,
        [
            {
                "hs_sku": x["sku"],
                "name": x["name"],
                "quantity": str(x["quantity"]),
                "price": f"{x['price']:.2f}",
                "currency": "USD",
            }
            for x in items
        ],
    )


def won_events(deal_ids: Sequence[str], *, start_event_id: int = 770_000) -> list[Any]:
    """Signed-to-be HubSpot ``deal.propertyChange`` events moving each deal to closedwon, occurring now."""
    from integration_assets.providers.hubspot import event_key
    from integration_assets.sandbox.events import SampleEvent, hubspot_change

    now = datetime.now(UTC)
    out = []
    for i, deal_id in enumerate(deal_ids):
        payload = hubspot_change(
            start_event_id + i, deal_id, "dealstage", WON_STAGE, now, subscription="deal.propertyChange"
        )
        out.append(SampleEvent("hubspot", f"hubspot:{event_key(payload)}", payload, object_id=deal_id))
    return out


def load_from_hubspot(hubspot_url: str, token: str, settings: Any, engine: Any) -> dict[str, int]:
    """Pull companies and deals from the HubSpot fake into the inbox and load them (the API pull path)."""
    from integration_assets.connectors.hubspot.client import HubSpotClient
    from integration_assets.connectors.landing import CursorStore, pull_entity
    from integration_assets.ingest.load import ingest_file

    client = HubSpotClient(token, hubspot_url)
    inbox = Path(settings.data_dir) / "outbound-demo" / "inbox"
    store = CursorStore(Path(settings.data_dir) / "outbound-demo" / "cursors")
    loaded: dict[str, int] = {}
    for entity in ("companies", "deals"):
        report = pull_entity(client, entity, inbox_dir=inbox, store=store, full=True)
        for name in report.files:
            path = Path(name) if Path(name).is_absolute() else inbox / name
            res = ingest_file(path, "hubspot", entity, settings=settings, engine=engine, force=True)
            if res.status != "succeeded":
                raise RuntimeError(f"loading the demo's {entity}: {res.status} {res.error}")
            loaded[entity] = loaded.get(entity, 0) + res.rows_inserted + res.rows_updated
    return loaded


def drain_until_idle(engine: Any, rounds: int = 5) -> int:
    """Apply what the receiver queued (the events path), as ``integration-assets events drain`` does."""
    from integration_assets.events.drain import drain

    applied = 0
    for _ in range(rounds):
        report = drain(engine=engine)
        applied += report.totals.events_in
        if not report.totals.events_in:
            break
    return applied


Poster = Callable[[Sequence[Any]], Any]
