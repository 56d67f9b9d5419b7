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
from collections.abc import Sequence
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
REQUIRED_LABEL = "Sales Channel"
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
        odoo.add_product(code, name=name, price=price, qty_available=10_000.0)
        codes.append((code, name, price))
    seeded: list[SeededDeal] = []
    company: tuple[str, int] | None = None
    for i in range(n):
        if i % deals_per_company == 0:
            k = i // deals_per_company
            name = f"{_NAMES[k % len(_NAMES)]} {k + 1:04d}"
            street, city, state, zip_code = _CITIES[k % len(_CITIES)]
            domain = f"{name.lower().replace(' ', '-')}.example.com"
            partner_id = odoo.add_partner(
                f"{name} Inc.",
                email=f"shipping@{domain}",
                phone=f"+1 415 555 {k % 10_000:04d}",
                street=street,
                city=city,
                zip=zip_code,
                country_code="US",
                state_code=state,
                website=f"https://{domain}",
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
                "sku": x["sku"],
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


# --------------------------------------------------------------------------------------------------------
# the demo run
# --------------------------------------------------------------------------------------------------------
@dataclass
class DemoWorld:
    """The demo's fakes, started for the run and stopped after it, and the clients pointed at them."""

    hubspot: Any
    odoo: Any
    easypost: Any
    deals: list[SeededDeal]

    def targets(self) -> Any:
        from integration_assets.connectors.easypost.client import EasyPostClient
        from integration_assets.connectors.hubspot.client import HubSpotClient
        from integration_assets.connectors.odoo.writer import OdooWriter
        from integration_assets.outbound.targets import Targets

        return Targets(
            odoo=OdooWriter(self.odoo.url, self.odoo.db, self.odoo.login, self.odoo.api_key),
            easypost=EasyPostClient(self.easypost.url, self.easypost.api_key),
            hubspot=HubSpotClient(self.hubspot.token, self.hubspot.url),
        )

    def stop(self) -> None:
        for fake in (self.hubspot, self.odoo, self.easypost):
            fake.stop()


def next_ids(engine: Any) -> tuple[int, int]:
    """The first deal and company ids of this demo run: past those of earlier runs on the same warehouse, so
    that running the demo again wins new deals (the old ones are won already) instead of replaying them."""
    import sqlalchemy as sa

    from integration_assets.warehouse.schema import companies, deals

    out = []
    for table, base in ((deals, DEMO_DEAL_BASE), (companies, DEMO_COMPANY_BASE)):
        c = table.c
        with engine.connect() as conn:
            ids = conn.scalars(
                sa.select(c.source_id).where(
                    c.source_system == "hubspot", c.source_id.like(f"{str(base)[:2]}_________")
                )
            ).all()
        out.append(max([base - 1, *(int(i) for i in ids if str(i).isdigit())]) + 1)
    return out[0], out[1]


def start_world(
    seed: int, n: int, *, deal_id_base: int = DEMO_DEAL_BASE, company_id_base: int = DEMO_COMPANY_BASE
) -> DemoWorld:
    """The three fakes on loopback ports, seeded with ``n`` open deals."""
    from integration_assets.sandbox.fakes.easypost import FakeEasyPost
    from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
    from integration_assets.sandbox.fakes.odoo import FakeOdoo

    hubspot, odoo, easypost = FakeHubSpot().start(), FakeOdoo().start(), FakeEasyPost().start()
    try:
        deals = seed_world(
            hubspot,
            odoo,
            easypost,
            n=n,
            rng=random.Random(seed),  # noqa: S311 - sample data
            deal_id_base=deal_id_base,
            company_id_base=company_id_base,
        )
    except BaseException:
        for fake in (hubspot, odoo, easypost):
            fake.stop()
        raise
    return DemoWorld(hubspot, odoo, easypost, deals)


def win(world: DemoWorld, deals: Sequence[SeededDeal], engine: Any, queue_url: str) -> dict[str, int]:
    """Each deal reaches closed-won in HubSpot: its webhook goes to the receiver, the drain applies it (the
    merge captures ``deal.won`` in the outbox), and the chain runs (relay, then each step until idle)."""
    from integration_assets.outbound.runner import run_all
    from integration_assets.queue import open_queue
    from integration_assets.sandbox.events import post_events

    for d in deals:
        world.hubspot.touch("deals", [d.deal_id], dealstage=WON_STAGE)
    http = post_events(won_events([d.deal_id for d in deals]), lambda: open_queue(queue_url))
    drain_until_idle(engine)
    reports = run_all(engine, targets=world.targets())
    return {str(k): v for k, v in http.items()} | {
        f"{name}:{field}": getattr(r, field)
        for name, r in reports.items()
        for field in ("sent", "dead_lettered")
        if getattr(r, field)
    }


def run_demo_outbound(seed: int = 7, *, deals: int = 4) -> dict[str, Any]:
    """``deals`` deals won and carried through the chain; then the demo's Odoo starts requiring
    :data:`REQUIRED_FIELD` on sale orders and one more deal is won: its chain is held in the dead letters."""
    from integration_assets.settings import get_settings
    from integration_assets.warehouse.db import ensure_schema, get_engine

    settings = get_settings()
    ensure_schema(settings.warehouse_url)
    deal_base, company_base = next_ids(get_engine(settings.warehouse_url))
    world = start_world(seed, deals + 1, deal_id_base=deal_base, company_id_base=company_base)
    try:
        return run_chains(world, settings, deals=deals)
    finally:
        world.stop()


def run_chains(world: DemoWorld, settings: Any, *, deals: int) -> dict[str, Any]:
    """The demo's chains in ``world`` (its fakes running): load the deals, win the first ``deals``, make Odoo
    require a field, win the last one. Returns the summary (:func:`summarize`)."""
    from integration_assets.warehouse.db import get_engine

    engine = get_engine(settings.warehouse_url)
    load_from_hubspot(world.hubspot.url, world.hubspot.token, settings, engine)
    first, held = world.deals[:deals], world.deals[deals]
    win(world, first, engine, settings.queue_url)
    world.odoo.require_field("sale.order", REQUIRED_FIELD, REQUIRED_LABEL)
    win(world, [held], engine, settings.queue_url)
    return summarize(engine, world, held.deal_id)


def summarize(engine: Any, world: DemoWorld, held_deal: str) -> dict[str, Any]:
    """The chains as the warehouse and the fakes see them, and the held one with the command that fixes it."""
    import sqlalchemy as sa

    from integration_assets.mapping.outbound import load_outbound_contract
    from integration_assets.warehouse.schema import dead_letters, outbound_chains

    ids = [d.deal_id for d in world.deals]
    c, dl = outbound_chains.c, dead_letters.c
    with engine.connect() as conn:
        chains = {
            r["chain_id"]: dict(r)
            for r in conn.execute(sa.select(outbound_chains).where(c.chain_id.in_(ids))).mappings()
        }
        letters = conn.execute(
            sa.select(dl.id, dl.natural_key, dl.check_name, dl.reason, dl.entity)
            .where(dl.stage == "outbound", dl.natural_key.in_(ids), dl.status == "pending")
            .order_by(dl.id)
        ).all()
    rows = []
    for d in world.deals:
        chain = chains.get(d.deal_id) or {}
        hs_props = world.hubspot.objects["deals"].get(d.deal_id, {}).get("properties", {})
        pickings = [
            p
            for p in world.odoo.models.get("stock.picking", {}).values()
            if chain.get("order_id") and str(_m2o(p.get("sale_id"))) == str(chain.get("order_id"))
        ]
        rows.append(
            {
                "deal_id": d.deal_id,
                "amount": d.amount,
                "status": chain.get("status") or "-",
                "order": chain.get("order_name"),
                "reserved": bool(pickings) and all(p.get("state") == "assigned" for p in pickings),
                "tracking_code": chain.get("tracking_code"),
                "label_url": chain.get("label_url"),
                "picking_tracking": ", ".join(
                    sorted(
                        str(p.get("carrier_tracking_ref")) for p in pickings if p.get("carrier_tracking_ref")
                    )
                )
                or None,
                "hubspot_tracking": hs_props.get("tracking_number"),
            }
        )
    contract = load_outbound_contract("odoo/sale_order")
    held = [
        {"id": i, "deal_id": k, "check": chk, "reason": reason, "entity": entity}
        for i, k, chk, reason, entity in letters
    ]
    fix = None
    if held:
        path = Path(contract.path or "")
        try:
            shown = path.resolve().relative_to(Path.cwd())
        except ValueError:
            shown = path
        fix = {
            "deal_id": held_deal,
            "field": REQUIRED_FIELD,
            "contract": str(shown),
            "contract_lines": [f"  {REQUIRED_FIELD}: {{value: {REQUIRED_VALUE}}}"],
            "replay": f"integration-assets dlq replay {' '.join(str(h['id']) for h in held)}",
            "resume": "integration-assets outbound run",
        }
    return {
        "chains": rows,
        "held": held,
        "fix": fix,
        "odoo_orders": len(world.odoo.models.get("sale.order", {})),
        "labels": world.easypost.labels_bought(),
    }


def _m2o(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) and value else value


def render_outbound_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Demo: outbound chain (deal won → Odoo order → EasyPost label → tracking written back)",
        title_justify="left",
        min_width=110,
    )
    for col in (
        "deal",
        "amount",
        "Odoo order",
        "stock",
        "label (tracking)",
        "Odoo picking",
        "HubSpot deal",
        "chain",
    ):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for r in summary["chains"]:
        table.add_row(
            r["deal_id"],
            f"{r['amount']:,.2f}",
            r["order"] or "-",
            "reserved" if r["reserved"] else "-",
            r["tracking_code"] or "-",
            "✓" if r["picking_tracking"] and r["picking_tracking"] == r["tracking_code"] else "-",
            "✓" if r["hubspot_tracking"] and r["hubspot_tracking"] == r["tracking_code"] else "-",
            r["status"],
        )
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(f"Odoo sale orders: {summary['odoo_orders']}; EasyPost labels bought: {summary['labels']}")
    for h in summary["held"]:
        console.print(
            f"[yellow]held[/] deal {h['deal_id']} at {h['entity']}: dead letter {h['id']} ({h['check']}): {h['reason']}"
        )
    fix = summary.get("fix")
    if fix:
        console.print(
            f"To fix it: the demo's Odoo now requires {fix['field']} on sale orders. Add to [bold]{fix['contract']}[/], "
            f"under fields:"
        )
        for line in fix["contract_lines"]:
            console.print(line, markup=False, highlight=False)
        console.print(
            f"then replay the held write: [bold]{fix['replay']}[/], and let the chain go on: [bold]{fix['resume']}[/]"
        )
        console.print(
            "(the replay writes to the Odoo in ODOO_URL: the demo's fake Odoo stopped with the demo; "
            "tests/sandbox/test_demo_outbound.py runs the fix against it)"
        )
