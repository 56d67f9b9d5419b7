"""A small, realistic, seeded sample of HubSpot and Odoo exports for the demo and the load tests.

One fictional company sells furniture, hardware, software seats and services. Its CRM (HubSpot) and ERP
(Odoo) agree the way real ones do: every HubSpot company that is a customer carries the ``Odoo Partner ID``
of its Odoo company partner; a closed-won deal has an Odoo sale.order whose ``client_order_ref`` is the deal
id and whose untaxed amount is the deal amount; an invoice's ``invoice_origin`` is its order's name.
They also disagree the way real ones do, on purpose:

- in-file duplicates (an export run twice into one file, overlapping pages of an API pull);
- a second file with later updates of some records, and one older version arriving after a newer one (a
  re-sent page of an earlier pull) which must not overwrite the newer version;
- a few bad rows: bad e-mails, a date in another format, an unknown dropdown value, ``N/A`` in an amount,
  Odoo ``false`` in a required date, a negative quantity, an order line whose order does not exist;
- one drifted file: a contacts export with a new column and a renamed lifecycle-stage label;
- a deals export made after the portal renamed a pipeline and a stage label, which the deals contract v2
  absorbs (no quarantine);
- reconciliation gaps: a closed-won deal without an order, an order pointing at a deal that is not won, and
  an order pointing at a deal id that does not exist (listed in the manifest for the reconciliation checks).

``generate_batch_samples`` returns a manifest with, per file and in load order, the expected outcome of
loading it (rows read, inserted, updated, unchanged, duplicates, quarantined by check, drift), computed by
replaying the merge rules on the generated records, so tests can assert exact counts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EXPORT_DAY = datetime(2026, 11, 20, tzinfo=UTC)

# Check names as they appear in dead letters, without the arguments of pandera checks
# ("email:str_matches('^…$')" is reported as "email:str_matches").
CHECK_BAD_EMAIL = "email:str_matches"
CHECK_DATE_FORMAT = "date_format"
CHECK_UNKNOWN_VALUE = "unknown_value"
CHECK_NOT_A_NUMBER = "not_a_number"
CHECK_REQUIRED = "required"
CHECK_NEGATIVE_QTY = "quantity:greater_than_or_equal_to"
CHECK_UNKNOWN_ORDER = "reference:order_id->sales_orders"

FIRST = (
    "Olivia Liam Emma Noah Ava Elijah Sophia James Isabella Lucas Mia Mateo Amelia Ethan Harper Leo Evelyn "
    "Oliver Luna Henry Camille Hugo Lea Jules Chloe Louis Ines Arthur Lina Gabriel Hanna Felix Lotte Finn "
    "Sofia Lars Emilie Tom Nora Sam Ruth Marek Aiko Ravi Priya Kofi Amara Diego Lucia Pablo Zoe Ana Jonas "
    "Clara Mila Theo Iris Max Eva Adam Alice Oscar"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Martin Bernard Dubois Thomas Robert Petit Durand "
    "Leroy Moreau Simon Laurent Lefebvre Muller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz "
    "Hoffmann Peeters Janssens Maes Jacobs Mertens Willems Claes Goossens Wouters DeVries Bakker Visser Smit "
    "Meijer Mulder Bos Vos Rossi Russo Ferrari Esposito Bianchi Romano Lopez Martinez Sanchez Perez Gomez "
    "Patel Nguyen Kim Tanaka Okafor"
).split()
ADJ = (
    "Azure Bright Cedar Copper Delta Eagle Fable Granite Harbor Iron Juniper Keystone Lumen Maple Nimbus Orion "
    "Pioneer Quartz Redwood Summit Terra Union Vertex Willow Zenith Atlas Beacon Cobalt Drift Ember"
).split()
NOUN = (
    "Interior Furniture Logistics Analytics Systems Foods Robotics Health Labs Media Energy Works Partners "
    "Supply Software Studio Dynamics Retail Ventures Holdings"
).split()
# (HubSpot Country/Region, Odoo res.country id, TLD, legal suffix)
COUNTRIES = [
    ("United States", 233, "com", "Inc."),
    ("United States", 233, "com", "LLC"),
    ("Germany", 57, "de", "GmbH"),
    ("France", 75, "fr", "SAS"),
    ("Belgium", 21, "be", "SA"),
    ("United Kingdom", 231, "co.uk", "Ltd"),
    ("Canada", 38, "ca", "Inc."),
    ("Netherlands", 165, "nl", "B.V."),
    ("Spain", 68, "es", "S.L."),
]
CITIES = {
    "United States": ["New York", "Austin", "Chicago", "Denver", "Seattle"],
    "Germany": ["Berlin", "Munich", "Hamburg"],
    "France": ["Paris", "Lyon", "Nantes"],
    "Belgium": ["Brussels", "Ghent", "Antwerp"],
    "United Kingdom": ["London", "Leeds", "Bristol"],
    "Canada": ["Toronto", "Montreal"],
    "Netherlands": ["Amsterdam", "Utrecht"],
    "Spain": ["Madrid", "Barcelona"],
}
INDUSTRIES = [
    "Computer Software",
    "Information Technology and Services",
    "Furniture",
    "Logistics and Supply Chain",
    "Food & Beverages",
    "Hospital & Health Care",
    "Marketing and Advertising",
    "Renewables & Environment",
    "Retail",
    "Wholesale",
    "Industrial Automation",
    "Financial Services",
    "Architecture & Planning",
]
OWNERS = ["Jane Cooper", "Wade Warren", "Esther Howard", "Cameron Williamson"]
LIFECYCLE = {
    "Subscriber": 4,
    "Lead": 30,
    "Marketing Qualified Lead": 14,
    "Sales Qualified Lead": 10,
    "Opportunity": 12,
    "Customer": 26,
    "Evangelist": 2,
    "Other": 2,
}
LIFECYCLE_API = {
    "Subscriber": "subscriber",
    "Lead": "lead",
    "Marketing Qualified Lead": "marketingqualifiedlead",
    "Sales Qualified Lead": "salesqualifiedlead",
    "Opportunity": "opportunity",
    "Customer": "customer",
    "Evangelist": "evangelist",
    "Other": "other",
}
LEAD_STATUS = {
    "": 30,
    "New": 20,
    "Open": 15,
    "In Progress": 12,
    "Open Deal": 8,
    "Attempted to Contact": 8,
    "Connected": 5,
    "Unqualified": 2,
}
LEAD_STATUS_API = {
    "New": "NEW",
    "Open": "OPEN",
    "In Progress": "IN_PROGRESS",
    "Open Deal": "OPEN_DEAL",
    "Attempted to Contact": "ATTEMPTED_TO_CONTACT",
    "Connected": "CONNECTED",
    "Unqualified": "UNQUALIFIED",
    "Bad Timing": "BAD_TIMING",
}
STAGES = [
    ("Appointment Scheduled", "appointmentscheduled"),
    ("Qualified To Buy", "qualifiedtobuy"),
    ("Presentation Scheduled", "presentationscheduled"),
    ("Decision Maker Bought-In", "decisionmakerboughtin"),
    ("Contract Sent", "contractsent"),
    ("Closed Won", "closedwon"),
    ("Closed Lost", "closedlost"),
]
STAGE_LABEL = {v: label for label, v in STAGES}
PRODUCT_FAMILIES = [
    # (category, type, prefix, names, variants, price range)
    (
        "All / Saleable / Office Furniture",
        "product",
        "FURN",
        [
            "Office Chair",
            "Standing Desk",
            "Meeting Table",
            "Storage Cabinet",
            "Acoustic Panel",
            "Monitor Arm",
        ],
        ["Black", "White", "Oak", "Walnut", "Grey", "Large", "Compact", "Ash", "Blue", "Red"],
        (60, 1400),
    ),
    (
        "All / Saleable / Hardware",
        "product",
        "HW",
        ["Docking Station", "Conference Camera", "Wireless Headset", "Room Sensor", "Badge Reader"],
        ["Gen 2", "Gen 3", "Pro", "Lite", "EU plug", "US plug", "UK plug", "Bundle"],
        (40, 900),
    ),
    (
        "All / Saleable / Software",
        "service",
        "SW",
        ["Workplace Analytics Seat", "Room Booking Seat", "Visitor Management Seat", "Asset Tracking Seat"],
        ["monthly", "annual", "3 years"],
        (8, 900),
    ),
    (
        "All / Saleable / Services",
        "service",
        "SRV",
        ["Onboarding Workshop", "Installation Day", "Support Plan", "Space Planning Study"],
        ["Bronze", "Silver", "Gold", "remote", "on site"],
        (150, 4000),
    ),
    (
        "All / Consumables",
        "consu",
        "CONS",
        ["Cable Kit", "Cleaning Kit", "Desk Mat", "Spare Casters"],
        ["S", "M", "L", "x10"],
        (5, 80),
    ),
]
CURRENCY = {"USD": [1, "USD"], "EUR": [125, "EUR"], "GBP": [147, "GBP"]}
TAX_RATE = 0.10


# -- formatting ---------------------------------------------------------------------------------------------
def _hs_csv_ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def _hs_api_ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _odoo_ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _amount_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


# -- what one generated record is expected to do ----------------------------------------------------------
@dataclass
class _Rec:
    payload: Any  # a CSV row (list) or a JSON record (dict)
    key: str | None
    ts: datetime | None  # source_updated_at as the engine will parse it
    bad: str | None = None  # the dead-letter check this record is expected to fail
    order_ref: str | None = None  # sale.order.line: the order it belongs to


@dataclass
class _File:
    rel: str
    system: str
    entity: str
    table: str
    contract: str
    recs: list[_Rec]
    header: list[str] | None = None  # CSV
    json_shape: str = "list"  # list | jsonl | hubspot_results | jsonrpc
    bom: bool = False
    drift: list[str] = field(default_factory=list)  # expected "kind:column" findings
    notes: str = ""


# -- the generator ----------------------------------------------------------------------------------------
class _Sample:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)  # noqa: S311 - sample data, not secrets

    # helpers
    def pick(self, weights: dict[str, int]) -> str:
        return self.r.choices(list(weights), weights=list(weights.values()))[0]

    def minute(self, start: datetime, end: datetime) -> datetime:
        span = int((end - start).total_seconds() // 60)
        return start + timedelta(minutes=self.r.randrange(max(span, 1)))

    def second(self, start: datetime, end: datetime) -> datetime:
        span = int((end - start).total_seconds())
        return start + timedelta(seconds=self.r.randrange(max(span, 1)))

    def ids(self, start: int, n: int, step: tuple[int, int]) -> list[int]:
        out, cur = [], start
        for _ in range(n):
            cur += self.r.randint(*step)
            out.append(cur)
        return out

    def build(self) -> list[_File]:
        r = self.r
        day = EXPORT_DAY
        # ---- companies: Odoo company partners (customers) and HubSpot companies (customers + prospects) ----
        names = r.sample([f"{a} {n}" for a in ADJ for n in NOUN], 135)
        companies = []
        hs_company_ids = self.ids(9_000_000_000, 135, (1, 40_000))
        for i, base in enumerate(names):
            country, country_id, tld, legal = r.choice(COUNTRIES)
            linked = i < 100  # the first 100 are Odoo customers; the rest are prospects known only to the CRM
            companies.append(
                {
                    "hs_id": str(hs_company_ids[i]),
                    "odoo_id": 7 + i if linked else None,
                    "name": f"{base}, {legal}" if r.random() < 0.15 else f"{base} {legal}",
                    "domain": base.lower().replace(" ", "") + "." + tld,
                    "country": country,
                    "country_id": country_id,
                    "city": r.choice(CITIES[country]),
                    "industry": r.choice(INDUSTRIES),
                    "owner": r.choice(OWNERS),
                    "created": self.minute(
                        datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)
                    ),
                    "currency": "EUR"
                    if tld in ("de", "fr", "be", "nl", "es")
                    else "GBP"
                    if tld == "co.uk"
                    else "USD",
                }
            )
        for c in companies:
            c["modified"] = self.minute(
                max(c["created"], day - timedelta(days=120)), day - timedelta(hours=2)
            )
        linked = [c for c in companies if c["odoo_id"]]

        # ---- Odoo individuals (contacts of customer companies) and HubSpot contacts ----
        people = []
        hs_contact_ids = self.ids(10_000, 300, (1, 60))
        used_emails: set[str] = set()
        for i in range(300):
            company = r.choice(companies)
            first, last = r.choice(FIRST), r.choice(LAST)
            local = f"{first}.{last}".lower()
            email = f"{local}@{company['domain']}"
            n = 2
            while email in used_emails:
                email, n = f"{local}{n}@{company['domain']}", n + 1
            used_emails.add(email)
            created = self.minute(
                max(company["created"], datetime(2024, 6, 1, tzinfo=UTC)), day - timedelta(days=3)
            )
            people.append(
                {
                    "hs_id": str(hs_contact_ids[i]),
                    "first": first,
                    "last": last,
                    "email": email,
                    "company": company,
                    "phone": f"+{r.randint(1, 49)} {r.randint(200, 999)} {r.randint(100, 999)} {r.randint(1000, 9999)}",
                    "stage": self.pick(LIFECYCLE),
                    "lead": self.pick(LEAD_STATUS),
                    "owner": r.choice(OWNERS),
                    "created": created,
                    "modified": self.minute(max(created, day - timedelta(days=60)), day - timedelta(hours=1)),
                }
            )
        odoo_people = [p for p in people if p["company"]["odoo_id"]][:200]
        for j, p in enumerate(odoo_people):
            p["odoo_id"] = 200 + j

        # ---- products ----
        products = []
        pid = 5
        for categ_i, (categ, ptype, prefix, pnames, variants, (lo, hi)) in enumerate(PRODUCT_FAMILIES):
            for pname in pnames:
                for variant in variants:
                    if len(products) >= 200 or r.random() < 0.1:
                        continue
                    price = round(r.uniform(lo, hi), 0) - (0.01 if r.random() < 0.4 else 0)
                    products.append(
                        {
                            "id": pid,
                            "code": f"{prefix}_{pid:04d}",
                            "name": f"{pname} ({variant})",
                            "type": ptype,
                            "categ": [categ_i + 1, categ],
                            "list_price": round(price, 2),
                            "standard_price": round(price * r.uniform(0.35, 0.7), 2),
                            "barcode": f"{r.randrange(10**12, 10**13)}" if ptype == "product" else False,
                            "active": r.random() > 0.03,
                            "write": self.second(datetime(2025, 1, 1, tzinfo=UTC), day - timedelta(days=1)),
                        }
                    )
                    pid += 1
        sellable = [p for p in products if p["active"]]

        # ---- orders and lines, built before the deals so a won deal's amount is its order's untaxed amount ----
        orders: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []

        def new_order(
            partner: list[Any], currency: str, when: datetime, state: str, ref: Any
        ) -> dict[str, Any]:
            oid = len(orders) + 1
            order = {
                "id": oid,
                "name": f"S{oid:05d}",
                "partner": partner,
                "date": when,
                "state": state,
                "currency": currency,
                "ref": ref,
                "lines": [],
            }
            for _ in range(r.choice((1, 1, 2, 2, 3, 4))):
                prod = r.choice(sellable)
                qty = float(r.choice((1, 1, 2, 3, 5, 10, 12, 25)))
                disc = r.choice((0.0, 0.0, 0.0, 5.0, 10.0))
                sub = round(qty * prod["list_price"] * (1 - disc / 100), 2)
                done = state in ("sale", "done")
                line = {
                    "id": 0,
                    "order": order,
                    "product": prod,
                    "qty": qty,
                    "price": prod["list_price"],
                    "discount": disc,
                    "subtotal": sub,
                    "total": round(sub * (1 + TAX_RATE), 2),
                    "delivered": qty if state == "done" or (done and r.random() < 0.5) else 0.0,
                }
                order["lines"].append(line)
            if r.random() < 0.08:  # a section line, as salespeople add them: no product, zero quantities
                order["lines"].insert(
                    0,
                    {
                        "id": 0,
                        "order": order,
                        "product": None,
                        "qty": 0.0,
                        "price": 0.0,
                        "discount": 0.0,
                        "subtotal": 0.0,
                        "total": 0.0,
                        "delivered": 0.0,
                        "section": "Phase 1",
                    },
                )
            order["untaxed"] = round(sum(ln["subtotal"] for ln in order["lines"]), 2)
            order["tax"] = round(order["untaxed"] * TAX_RATE, 2)
            order["total"] = round(order["untaxed"] + order["tax"], 2)
            order["write"] = self.second(when, min(when + timedelta(days=20), day - timedelta(hours=3)))
            orders.append(order)
            return order

        # ---- HubSpot deals ----
        deals: list[dict[str, Any]] = []
        hs_deal_ids = self.ids(15_000_000_000, 250, (1, 90_000))
        for i in range(250):
            company = linked[i % len(linked)] if i < 190 else r.choice(companies[100:])
            won = company["odoo_id"] is not None and r.random() < 0.35
            stage = (
                "closedwon"
                if won
                else r.choice(
                    [
                        "appointmentscheduled",
                        "qualifiedtobuy",
                        "presentationscheduled",
                        "decisionmakerboughtin",
                        "contractsent",
                        "closedlost",
                        "closedlost",
                    ]
                )
            )
            created = self.minute(
                max(company["created"], datetime(2025, 6, 1, tzinfo=UTC)), day - timedelta(days=25)
            )
            closed = stage in ("closedwon", "closedlost")
            close = (
                self.minute(created + timedelta(days=3), day - timedelta(days=2))
                if closed
                else self.minute(day + timedelta(days=5), day + timedelta(days=120))
            )
            deal = {
                "hs_id": str(hs_deal_ids[i]),
                "company": company,
                "stage": stage,
                "created": created,
                "close": close,
                "owner": r.choice(OWNERS),
                "amount": round(r.uniform(800, 60_000), -1),
                "name": f"{company['name'].split(',')[0]} - {r.choice(['Office refit', 'Hybrid work', 'Analytics rollout', 'New HQ', 'Renewal', 'Expansion'])}",
            }
            deal["modified"] = self.minute(
                max(created, close if closed else created), day - timedelta(minutes=30)
            )
            deals.append(deal)
        won_deals = [d for d in deals if d["stage"] == "closedwon"]
        no_order_deal = won_deals[-1]  # reconciliation gap: won in the CRM, no order in the ERP yet
        for d in won_deals:
            if d is no_order_deal:
                continue
            c = d["company"]
            when = self.second(d["close"], d["close"] + timedelta(days=2))
            o = new_order(
                [c["odoo_id"], c["name"]],
                c["currency"],
                min(when, day - timedelta(hours=6)),
                r.choice(["sale", "sale", "sale", "done"]),
                d["hs_id"],
            )
            d["amount"] = o["untaxed"]
        # Reconciliation gaps on the ERP side: a quotation made before its deal was won, and a typo'd deal id.
        open_deal = next(d for d in deals if d["stage"] == "contractsent" and d["company"]["odoo_id"])
        premature = new_order(
            [open_deal["company"]["odoo_id"], open_deal["company"]["name"]],
            open_deal["company"]["currency"],
            day - timedelta(days=4),
            "sent",
            open_deal["hs_id"],
        )
        deal_ids = {d["hs_id"] for d in deals}
        typo_deal_id = str(int(won_deals[0]["hs_id"]) + 1)
        while typo_deal_id in deal_ids:
            typo_deal_id = str(int(typo_deal_id) + 1)
        typo = new_order(
            [won_deals[0]["company"]["odoo_id"], won_deals[0]["company"]["name"]],
            won_deals[0]["company"]["currency"],
            day - timedelta(days=9),
            "sale",
            typo_deal_id,
        )
        # Orders that did not come from a deal: shop and phone orders, by companies and by individuals.
        while len(orders) < 270:
            if r.random() < 0.7:
                c = r.choice(linked)
                partner, currency = [c["odoo_id"], c["name"]], c["currency"]
            else:
                p = r.choice(odoo_people)
                partner = [p["odoo_id"], f"{p['company']['name']}, {p['first']} {p['last']}"]
                currency = p["company"]["currency"]
            state = r.choice(["draft", "sent", "sale", "sale", "sale", "done", "cancel"])
            ref = r.choice([False, False, f"PO-{r.randint(1000, 9999)}"])
            new_order(
                partner,
                currency,
                self.second(datetime(2026, 5, 1, tzinfo=UTC), day - timedelta(days=1)),
                state,
                ref,
            )
        orders.sort(key=lambda o: o["id"])
        line_id = 1
        for o in orders:
            for ln in o["lines"]:
                ln["id"] = line_id
                line_id += 1
                lines.append(ln)
                ln["write"] = o["write"]

        # ---- invoices ----
        moves: list[dict[str, Any]] = []
        seq = {"INV": 0, "RINV": 0}
        for o in orders:
            if o["state"] not in ("sale", "done"):
                o["invoice_status"] = "no"
                continue
            kind = r.choices(["invoiced", "to invoice", "draft"], weights=[70, 15, 15])[0]
            o["invoice_status"] = "invoiced" if kind == "invoiced" else "to invoice"
            if kind == "to invoice":
                continue
            posted = kind == "invoiced"
            inv_date = min(
                (o["date"] + timedelta(days=r.randint(0, 6))).date(), (day - timedelta(days=1)).date()
            )
            pay = (
                r.choices(["paid", "in_payment", "not_paid", "partial"], weights=[55, 10, 25, 10])[0]
                if posted
                else "not_paid"
            )
            residual = (
                0.0
                if pay in ("paid", "in_payment")
                else o["total"]
                if pay == "not_paid"
                else round(o["total"] * 0.4, 2)
            )
            name: Any = False
            if posted:
                seq["INV"] += 1
                name = f"INV/2026/{seq['INV']:05d}"
                for ln in o["lines"]:
                    ln["invoiced"] = ln["qty"]
            moves.append(
                {
                    "id": len(moves) + 1,
                    "name": name,
                    "type": "out_invoice",
                    "state": "posted" if posted else "draft",
                    "payment": pay,
                    "order": o,
                    "date": inv_date if posted else False,
                    "due": inv_date + timedelta(days=30) if posted else False,
                    "untaxed": o["untaxed"],
                    "tax": o["tax"],
                    "total": o["total"],
                    "residual": residual,
                    "write": self.second(
                        max(o["write"], datetime.combine(inv_date, datetime.min.time(), UTC)),
                        day - timedelta(minutes=10),
                    ),
                }
            )
            if posted and pay == "paid" and r.random() < 0.06:  # a credit note for a returned item
                seq["RINV"] += 1
                amount = round(o["lines"][-1]["subtotal"], 2)
                moves.append(
                    {
                        "id": len(moves) + 1,
                        "name": f"RINV/2026/{seq['RINV']:05d}",
                        "type": "out_refund",
                        "state": "posted",
                        "payment": "paid",
                        "order": o,
                        "date": min(inv_date + timedelta(days=10), (day - timedelta(days=1)).date()),
                        "due": min(inv_date + timedelta(days=10), (day - timedelta(days=1)).date()),
                        "untaxed": amount,
                        "tax": round(amount * TAX_RATE, 2),
                        "total": round(amount * (1 + TAX_RATE), 2),
                        "residual": 0.0,
                        "write": day - timedelta(hours=r.randint(2, 40)),
                    }
                )

        self.companies, self.people, self.deals, self.products = companies, people, deals, products
        self.orders, self.lines, self.moves = orders, lines, moves
        self.gap_orders = {premature["id"], typo["id"]}
        self.reconciliation = {
            "closed_won_deals_without_order": [no_order_deal["hs_id"]],
            "orders_for_deals_not_won": [
                {"order": premature["name"], "deal_id": open_deal["hs_id"], "deal_stage": open_deal["stage"]}
            ],
            "orders_for_unknown_deals": [{"order": typo["name"], "deal_id": typo_deal_id}],
            "closed_won_deals_with_order": sum(1 for d in won_deals if d is not no_order_deal),
            "note": (
                "Every other closed-won deal has exactly one sale.order whose client_order_ref is the deal id "
                "and whose amount_untaxed is the deal amount; every posted invoice's invoice_origin is its "
                "order's name; every HubSpot company with an Odoo Partner ID has that res.partner."
            ),
        }
        return self.files()

    # ---- files ------------------------------------------------------------------------------------------
    def files(self) -> list[_File]:
        return [
            *self.hubspot_companies(),
            *self.hubspot_contacts(),
            *self.hubspot_deals(),
            *self.odoo_partners(),
            self.odoo_products(),
            *self.odoo_orders(),
            self.odoo_lines(),
            self.odoo_moves(),
        ]

    def _dup(self, recs: list[_Rec], n: int) -> list[_Rec]:
        """The same records again, later in the file (an export appended twice, overlapping pages)."""
        good = [x for x in recs if x.bad is None]
        copies = [_Rec(x.payload, x.key, x.ts, None, x.order_ref) for x in self.r.sample(good, n)]
        out = list(recs)
        for c in copies:
            out.insert(self.r.randrange(len(out) // 2, len(out) + 1), c)
        return out

    def hubspot_companies(self) -> list[_File]:
        header = [
            "Record ID",
            "Company name",
            "Company Domain Name",
            "Industry",
            "Country/Region",
            "Odoo Partner ID",
            "Create Date",
            "Last Modified Date",
            "Company owner",
        ]

        def row(c: dict[str, Any]) -> list[str]:
            return [
                c["hs_id"],
                c["name"],
                c["domain"],
                c["industry"],
                c["country"],
                str(c["odoo_id"] or ""),
                _hs_csv_ts(c["created"]),
                _hs_csv_ts(c["modified"]),
                c["owner"],
            ]

        first = self._dup([_Rec(row(c), c["hs_id"], c["modified"]) for c in self.companies], 3)
        updated = []
        for c in self.r.sample(self.companies, 15):
            c["modified"] = self.minute(EXPORT_DAY + timedelta(hours=1), EXPORT_DAY + timedelta(hours=20))
            c["industry"] = self.r.choice(INDUSTRIES)
            updated.append(_Rec(row(c), c["hs_id"], c["modified"]))
        return [
            _File(
                "hubspot/companies/hubspot-crm-exports-all-companies-2026-11-20.csv",
                "hubspot",
                "companies",
                "companies",
                "hubspot.companies.csv@v1",
                first,
                header,
                bom=True,
                notes="UTF-8 with BOM, as Excel-friendly exports are; 3 rows appear twice.",
            ),
            _File(
                "hubspot/companies/hubspot-crm-exports-all-companies-2026-11-21.csv",
                "hubspot",
                "companies",
                "companies",
                "hubspot.companies.csv@v1",
                updated,
                header,
                notes="Companies modified on 2026-11-20 (industry re-classified).",
            ),
        ]

    def hubspot_contacts(self) -> list[_File]:
        header = [
            "Record ID",
            "First Name",
            "Last Name",
            "Email",
            "Phone Number",
            "Lifecycle Stage",
            "Lead Status",
            "Contact owner",
            "Primary Associated Company ID",
            "Associated Company",
            "Country/Region",
            "Create Date",
            "Last Modified Date",
            "Last Activity Date",
            "Marketing contact status",
        ]

        def row(
            p: dict[str, Any],
            *,
            email: str | None = None,
            modified: str | None = None,
            stage: str | None = None,
        ) -> list[str]:
            return [
                p["hs_id"],
                p["first"],
                p["last"],
                email or p["email"],
                p["phone"],
                stage or p["stage"],
                p["lead"],
                p["owner"],
                p["company"]["hs_id"],
                p["company"]["name"],
                p["company"]["country"],
                _hs_csv_ts(p["created"]),
                modified or _hs_csv_ts(p["modified"]),
                _hs_csv_ts(p["modified"] - timedelta(hours=5)),
                "Marketing contact"
                if p["stage"] in ("Lead", "Marketing Qualified Lead")
                else "Non-marketing contact",
            ]

        people = self.people
        recs = [_Rec(row(p), p["hs_id"], p["modified"]) for p in people]
        # Bad rows: two malformed e-mails (typed by hand into the CRM) and one date in a US-locale format.
        for i, bad_email in (
            (17, f"{people[17]['first'].lower()}.{people[17]['last'].lower()}@"),
            (121, f"{people[121]['first'].lower()} at {people[121]['company']['domain']}"),
        ):
            recs[i] = _Rec(row(people[i], email=bad_email), people[i]["hs_id"], None, CHECK_BAD_EMAIL)
        us = people[205]["modified"].strftime("%m/%d/%Y %I:%M %p")
        recs[205] = _Rec(row(people[205], modified=us), people[205]["hs_id"], None, CHECK_DATE_FORMAT)
        quarantined = {17, 121, 205}
        first = self._dup(recs, 4)

        # API pull of contacts modified since the export (search sorted by lastmodifieddate): JSONL.
        def api(p: dict[str, Any], modified: datetime, phone: str | None = None) -> dict[str, Any]:
            props = {
                "createdate": _hs_api_ts(p["created"]),
                "email": p["email"],
                "firstname": p["first"],
                "hs_lead_status": LEAD_STATUS_API.get(p["lead"]),
                "hs_object_id": p["hs_id"],
                "lastmodifieddate": _hs_api_ts(modified),
                "lastname": p["last"],
                "lifecyclestage": LIFECYCLE_API[p["stage"]],
                "phone": phone or p["phone"],
                "country": p["company"]["country"],
            }
            return {
                "id": p["hs_id"],
                "properties": props,
                "createdAt": _hs_api_ts(p["created"]),
                "updatedAt": _hs_api_ts(modified),
                "archived": False,
                "associations": {
                    "companies": {"results": [{"id": p["company"]["hs_id"], "type": "contact_to_company"}]}
                },
            }

        candidates = [p for i, p in enumerate(people) if i not in quarantined]
        changed = self.r.sample(candidates, 36)
        api_recs = []
        for p in changed[:35]:
            p["modified"] = self.second(EXPORT_DAY + timedelta(hours=1), EXPORT_DAY + timedelta(hours=22))
            p["modified"] = p["modified"].replace(microsecond=self.r.randrange(1000) * 1000)
            if p["stage"] in ("Lead", "Marketing Qualified Lead"):
                p["stage"] = self.r.choice(["Sales Qualified Lead", "Opportunity"])
            p["lead"] = self.r.choice(["In Progress", "Connected", "Open Deal"])
            api_recs.append(_Rec(api(p, p["modified"]), p["hs_id"], p["modified"]))
        stale_person = changed[35]
        stale_at = stale_person["modified"] - timedelta(days=2, minutes=17, milliseconds=250)
        stale = _Rec(api(stale_person, stale_at, phone="+1 555 000 0000"), stale_person["hs_id"], stale_at)
        api_recs.insert(7, stale)
        self.stale = [
            {
                "table": "contacts",
                "source_id": stale_person["hs_id"],
                "file": "hubspot/contacts/contacts-api-2026-11-21.jsonl",
                "kept_phone": stale_person["phone"],
                "kept_updated_at": stale_person["modified"].isoformat(),
            }
        ]
        api_file = self._dup(api_recs, 2)

        # Drifted export: the view gained "Preferred language", and the admins renamed the lifecycle label
        # "Marketing Qualified Lead" to "MQL" (the internal value is unchanged; the v1 contract does not know it).
        drift_header = [*header, "Preferred language"]
        drift_recs = []
        for p in self.r.sample([p for p in candidates if p not in changed], 40):
            p["modified"] = self.minute(
                EXPORT_DAY + timedelta(days=2, hours=1), EXPORT_DAY + timedelta(days=2, hours=9)
            )
            label = "MQL" if p["stage"] == "Marketing Qualified Lead" else p["stage"]
            drift_recs.append(
                _Rec(
                    [*row(p, stage=label), self.r.choice(["English", "French", "German", "Dutch"])],
                    p["hs_id"],
                    p["modified"],
                    CHECK_UNKNOWN_VALUE if label == "MQL" else None,
                )
            )
        return [
            _File(
                "hubspot/contacts/hubspot-crm-exports-all-contacts-2026-11-20.csv",
                "hubspot",
                "contacts",
                "contacts",
                "hubspot.contacts.csv@v1",
                first,
                header,
                drift=["format_change:Last Modified Date"],
                notes="2 malformed e-mails, 1 Last Modified Date in US format; 4 rows appear twice.",
            ),
            _File(
                "hubspot/contacts/contacts-api-2026-11-21.jsonl",
                "hubspot",
                "contacts",
                "contacts",
                "hubspot.contacts.api@v1",
                api_file,
                json_shape="jsonl",
                notes="v3 search results modified since the export; 2 records repeated by overlapping pages; "
                "1 record is an older version (a re-sent page) and must not overwrite the newer one.",
            ),
            _File(
                "hubspot/contacts/hubspot-crm-exports-all-contacts-2026-11-22.csv",
                "hubspot",
                "contacts",
                "contacts",
                "hubspot.contacts.csv@v1",
                drift_recs,
                drift_header,
                drift=["new_column:Preferred language", "unknown_value:Lifecycle Stage"],
                notes="Drifted: new column 'Preferred language' (loads, reported) and the lifecycle label "
                "'Marketing Qualified Lead' renamed 'MQL' (those rows quarantined as unknown_value).",
            ),
        ]

    def hubspot_deals(self) -> list[_File]:
        header = [
            "Record ID",
            "Deal Name",
            "Deal Stage",
            "Amount",
            "Close Date",
            "Create Date",
            "Last Modified Date",
            "Pipeline",
            "Deal owner",
            "Associated Company IDs",
        ]

        def row(
            d: dict[str, Any],
            *,
            stage_label: str | None = None,
            amount: str | None = None,
            pipeline: str = "Sales Pipeline",
        ) -> list[str]:
            return [
                d["hs_id"],
                d["name"],
                stage_label or STAGE_LABEL[d["stage"]],
                amount if amount is not None else _amount_text(d["amount"]),
                _hs_csv_ts(d["close"]),
                _hs_csv_ts(d["created"]),
                _hs_csv_ts(d["modified"]),
                pipeline,
                d["owner"],
                d["company"]["hs_id"],
            ]

        deals = self.deals
        recs = [_Rec(row(d), d["hs_id"], d["modified"]) for d in deals]
        open_idx = [i for i, d in enumerate(deals) if d["stage"] not in ("closedwon", "closedlost")]
        na_i, unknown_i = open_idx[3], open_idx[11]
        recs[na_i] = _Rec(row(deals[na_i], amount="N/A"), deals[na_i]["hs_id"], None, CHECK_NOT_A_NUMBER)
        # A stage of another pipeline's vocabulary typed into a deal import: the contract does not know it.
        recs[unknown_i] = _Rec(
            row(deals[unknown_i], stage_label="Negotiation"),
            deals[unknown_i]["hs_id"],
            None,
            CHECK_UNKNOWN_VALUE,
        )
        first = self._dup(recs, 3)

        def api(d: dict[str, Any]) -> dict[str, Any]:
            props = {
                "amount": f"{d['amount']:.2f}",
                "closedate": _hs_api_ts(d["close"]),
                "createdate": _hs_api_ts(d["created"]),
                "dealname": d["name"],
                "dealstage": d["stage"],
                "hs_lastmodifieddate": _hs_api_ts(d["modified"]),
                "hs_object_id": d["hs_id"],
                "pipeline": "default",
            }
            return {
                "id": d["hs_id"],
                "properties": props,
                "createdAt": _hs_api_ts(d["created"]),
                "updatedAt": _hs_api_ts(d["modified"]),
                "archived": False,
                "associations": {
                    "companies": {"results": [{"id": d["company"]["hs_id"], "type": "deal_to_company"}]}
                },
            }

        progressing = [deals[i] for i in open_idx if i not in (na_i, unknown_i)]
        api_recs = []
        order = [
            "appointmentscheduled",
            "qualifiedtobuy",
            "presentationscheduled",
            "decisionmakerboughtin",
            "contractsent",
        ]
        for d in self.r.sample(progressing, 30):
            if d["stage"] in order[:-1]:
                d["stage"] = order[order.index(d["stage"]) + 1]
            d["amount"] = round(d["amount"] * self.r.uniform(0.9, 1.2), -1)
            d["modified"] = self.second(EXPORT_DAY + timedelta(hours=2), EXPORT_DAY + timedelta(hours=23))
            d["modified"] = d["modified"].replace(microsecond=self.r.randrange(1000) * 1000)
            api_recs.append(_Rec(api(d), d["hs_id"], d["modified"]))

        # After the portal renamed "Sales Pipeline" -> "New Business" and "Appointment Scheduled" ->
        # "Discovery Call Booked" and added "Deal Type": the deals contract v2 absorbs it.
        renamed_header = [*header, "Deal Type"]
        renamed = []
        touched = {r.key for r in api_recs}
        for d in self.r.sample([d for d in progressing if d["hs_id"] not in touched], 20):
            d["modified"] = self.minute(
                EXPORT_DAY + timedelta(days=3, hours=1), EXPORT_DAY + timedelta(days=3, hours=8)
            )
            label = (
                "Discovery Call Booked" if d["stage"] == "appointmentscheduled" else STAGE_LABEL[d["stage"]]
            )
            renamed.append(
                _Rec(
                    [
                        *row(d, stage_label=label, pipeline="New Business"),
                        self.r.choice(["New Business", "Existing Business"]),
                    ],
                    d["hs_id"],
                    d["modified"],
                )
            )
        return [
            _File(
                "hubspot/deals/hubspot-crm-exports-all-deals-2026-11-20.csv",
                "hubspot",
                "deals",
                "deals",
                "hubspot.deals.csv@v2",
                first,
                header,
                drift=["type_change:Amount", "unknown_value:Deal Stage"],
                notes="1 Amount 'N/A', 1 unknown stage label 'Negotiation'; 3 rows appear twice.",
            ),
            _File(
                "hubspot/deals/deals-api-2026-11-21.json",
                "hubspot",
                "deals",
                "deals",
                "hubspot.deals.api@v1",
                api_recs,
                json_shape="hubspot_results",
                notes="v3 list response: stage progressions.",
            ),
            _File(
                "hubspot/deals/hubspot-crm-exports-all-deals-2026-11-23.csv",
                "hubspot",
                "deals",
                "deals",
                "hubspot.deals.csv@v2",
                renamed,
                renamed_header,
                notes="Exported after the pipeline and first-stage labels were renamed and 'Deal Type' was added: "
                "absorbed by hubspot.deals.csv@v2 (no quarantine, no drift).",
            ),
        ]

    def odoo_partners(self) -> list[_File]:
        def company(c: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": c["odoo_id"],
                "name": c["name"],
                "display_name": c["name"],
                "email": f"info@{c['domain']}",
                "phone": f"+{self.r.randint(1, 49)} {self.r.randint(100, 999)} {self.r.randint(1000000, 9999999)}",
                "mobile": False,
                "is_company": True,
                "parent_id": False,
                "street": f"{self.r.randint(1, 250)} {self.r.choice(['Main St', 'Market Street', 'Rue de la Paix', 'Hauptstrasse', 'Kerkstraat'])}",
                "city": c["city"],
                "zip": str(self.r.randint(10000, 99999)),
                "country_id": [c["country_id"], c["country"]],
                "vat": f"{c['country'][:2].upper()}{self.r.randint(10**8, 10**9 - 1)}"
                if self.r.random() < 0.7
                else False,
                "active": True,
                "write_date": _odoo_ts(c["odoo_write"]),
            }

        def person(p: dict[str, Any]) -> dict[str, Any]:
            c = p["company"]
            return {
                "id": p["odoo_id"],
                "name": f"{p['first']} {p['last']}",
                "display_name": f"{c['name']}, {p['first']} {p['last']}",
                "email": p["email"],
                "phone": False if self.r.random() < 0.3 else p["phone"],
                "mobile": p["phone"],
                "is_company": False,
                "parent_id": [c["odoo_id"], c["name"]],
                "street": False,
                "city": c["city"],
                "zip": False,
                "country_id": [c["country_id"], c["country"]],
                "vat": False,
                "active": self.r.random() > 0.04,
                "write_date": _odoo_ts(p["odoo_write"]),
            }

        linked = [c for c in self.companies if c["odoo_id"]]
        for c in linked:
            c["odoo_write"] = self.second(datetime(2025, 3, 1, tzinfo=UTC), EXPORT_DAY - timedelta(days=1))
        people = [p for p in self.people if "odoo_id" in p]
        for p in people:
            p["odoo_write"] = self.second(datetime(2025, 3, 1, tzinfo=UTC), EXPORT_DAY - timedelta(days=1))
        recs = [_Rec(company(c), str(c["odoo_id"]), c["odoo_write"]) for c in linked]
        recs += [_Rec(person(p), str(p["odoo_id"]), p["odoo_write"]) for p in people]
        recs.sort(key=lambda x: (x.ts, int(x.key or 0)))  # order: "write_date asc, id asc"
        # Pages of 100 fetched with write_date >= the last one seen start with the previous page's last record.
        first: list[_Rec] = []
        for i, rec in enumerate(recs, 1):
            first.append(rec)
            if i % 100 == 0:
                first.append(_Rec(rec.payload, rec.key, rec.ts))
        updates = []
        for p in self.r.sample(people, 20):
            p["odoo_write"] = self.second(EXPORT_DAY + timedelta(hours=1), EXPORT_DAY + timedelta(hours=20))
            p["phone"] = (
                f"+{self.r.randint(1, 49)} {self.r.randint(200, 999)} {self.r.randint(100, 999)} {self.r.randint(1000, 9999)}"
            )
            rec = person(p)
            rec["phone"] = p["phone"]
            updates.append(_Rec(rec, str(p["odoo_id"]), p["odoo_write"]))
        return [
            _File(
                "odoo/res.partner/res.partner-2026-11-20.json",
                "odoo",
                "res.partner",
                "customers",
                "odoo.res.partner.api@v1",
                first,
                json_shape="jsonrpc",
                notes="A saved JSON-RPC response; pages overlapping on write_date repeat 3 records.",
            ),
            _File(
                "odoo/res.partner/res.partner-2026-11-21.jsonl",
                "odoo",
                "res.partner",
                "customers",
                "odoo.res.partner.api@v1",
                updates,
                json_shape="jsonl",
                notes="Contacts with a new phone number.",
            ),
        ]

    def odoo_products(self) -> _File:
        def rec(p: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": p["id"],
                "default_code": p["code"],
                "name": p["name"],
                "display_name": f"[{p['code']}] {p['name']}",
                "barcode": p["barcode"],
                "list_price": p["list_price"],
                "standard_price": p["standard_price"],
                "type": p["type"],
                "categ_id": p["categ"],
                "active": p["active"],
                "qty_available": float(self.r.randint(0, 400)) if p["type"] == "product" else 0.0,
                "write_date": _odoo_ts(p["write"]),
            }

        recs = self._dup([_Rec(rec(p), str(p["id"]), p["write"]) for p in self.products], 2)
        return _File(
            "odoo/product.product/product.product-2026-11-20.jsonl",
            "odoo",
            "product.product",
            "products",
            "odoo.product.product.api@v1",
            recs,
            json_shape="jsonl",
            notes="2 records repeated.",
        )

    def _order_rec(self, o: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": o["id"],
            "name": o["name"],
            "partner_id": o["partner"],
            "date_order": _odoo_ts(o["date"]),
            "amount_untaxed": o["untaxed"],
            "amount_tax": o["tax"],
            "amount_total": o["total"],
            "currency_id": CURRENCY[o["currency"]],
            "state": o["state"],
            "invoice_status": o["invoice_status"],
            "client_order_ref": o["ref"],
            "user_id": [2, "Mitchell Admin"],
            "order_line": [ln["id"] for ln in o["lines"]],
            "write_date": _odoo_ts(o["write"]),
        }

    def odoo_orders(self) -> list[_File]:
        orders = self.orders
        recs = [_Rec(self._order_rec(o), str(o["id"]), o["write"]) for o in orders]
        # A record whose required order date came through as Odoo's false (a broken export of a quotation).
        broken = next(o for o in orders if o["state"] == "draft" and not o["ref"])
        bad = self._order_rec(broken)
        bad["date_order"] = False
        recs[broken["id"] - 1] = _Rec(bad, str(broken["id"]), None, CHECK_REQUIRED)
        self.broken_order = broken
        first = self._dup(recs, 3)

        updates = []
        movable = [
            o
            for o in orders
            if o is not broken and o["id"] not in self.gap_orders and o["state"] in ("sent", "sale")
        ]
        for o in self.r.sample(movable, 25):
            if o["state"] == "sent":
                o["state"], o["invoice_status"] = "sale", "to invoice"
            else:
                o["state"] = "done"
            o["write"] = self.second(EXPORT_DAY + timedelta(hours=1), EXPORT_DAY + timedelta(hours=23))
            updates.append(_Rec(self._order_rec(o), str(o["id"]), o["write"]))
        # A late retry of an earlier pull delivers an older version of an order the first file already has
        # in a newer version (a quotation since confirmed): it must not overwrite it.
        updated = {x.key for x in updates}
        target = next(
            o
            for o in orders
            if o["state"] == "sale"
            and o is not broken
            and str(o["id"]) not in updated
            and o["id"] not in self.gap_orders
            and o["write"] - o["date"] > timedelta(hours=2)
        )
        older_at = self.second(target["date"], target["write"] - timedelta(hours=1))
        older = {
            **self._order_rec(target),
            "state": "sent",
            "invoice_status": "no",
            "write_date": _odoo_ts(older_at),
        }
        updates.insert(len(updates) // 2, _Rec(older, str(target["id"]), older_at))
        self.stale.append(
            {
                "table": "sales_orders",
                "source_id": str(target["id"]),
                "file": "odoo/sale.order/sale.order-2026-11-21.json",
                "kept_state": target["state"],
                "kept_updated_at": target["write"].isoformat(),
            }
        )
        return [
            _File(
                "odoo/sale.order/sale.order-2026-11-20.json",
                "odoo",
                "sale.order",
                "sales_orders",
                "odoo.sale.order.api@v1",
                first,
                notes="1 order with date_order false (required); 3 records repeated.",
            ),
            _File(
                "odoo/sale.order/sale.order-2026-11-21.json",
                "odoo",
                "sale.order",
                "sales_orders",
                "odoo.sale.order.api@v1",
                updates,
                notes="Orders confirmed or locked since, and one older version of an order the first file "
                "has in a newer version (a late retry): it must not overwrite it.",
            ),
        ]

    def odoo_lines(self) -> _File:
        def rec(ln: dict[str, Any]) -> dict[str, Any]:
            o, p = ln["order"], ln["product"]
            return {
                "id": ln["id"],
                "order_id": [o["id"], o["name"]],
                "product_id": [p["id"], f"[{p['code']}] {p['name']}"] if p else False,
                "name": ln.get("section") or f"[{p['code']}] {p['name']}",
                "display_type": "line_section" if ln.get("section") else False,
                "product_uom_qty": ln["qty"],
                "qty_delivered": ln["delivered"],
                "qty_invoiced": ln.get("invoiced", 0.0),
                "price_unit": ln["price"],
                "discount": ln["discount"],
                "price_subtotal": ln["subtotal"],
                "price_total": ln["total"],
                "write_date": _odoo_ts(ln["write"]),
            }

        broken_id = self.broken_order["id"]
        recs = []
        for ln in self.lines:
            bad = CHECK_UNKNOWN_ORDER if ln["order"]["id"] == broken_id else None
            recs.append(_Rec(rec(ln), str(ln["id"]), ln["write"], bad, str(ln["order"]["id"])))
        # A return keyed in as a negative quantity (Odoo expects a credit note).
        neg = next(x for x in recs if x.bad is None and x.payload["product_uom_qty"] > 1)
        neg.payload = {**neg.payload, "product_uom_qty": -2.0}
        neg.bad = CHECK_NEGATIVE_QTY
        # A line of an order this export does not contain (deleted, or created after the orders were pulled).
        last = self.lines[-1]
        orphan = rec(last)
        orphan.update({"id": last["id"] + 1, "order_id": [99999, "S99999"]})
        recs.append(_Rec(orphan, str(last["id"] + 1), last["write"], CHECK_UNKNOWN_ORDER, "99999"))
        recs = self._dup(recs, 2)
        return _File(
            "odoo/sale.order.line/sale.order.line-2026-11-20.jsonl",
            "odoo",
            "sale.order.line",
            "sales_order_lines",
            "odoo.sale.order.line.api@v1",
            recs,
            json_shape="jsonl",
            notes=f"1 negative quantity, 1 line of order 99999 (not in the export), and the "
            f"{sum(1 for ln in self.lines if ln['order']['id'] == broken_id)} lines of order "
            f"{self.broken_order['name']}, which was quarantined: all quarantined with "
            f"{CHECK_UNKNOWN_ORDER} until their order loads; 2 records repeated.",
        )

    def odoo_moves(self) -> _File:
        def rec(m: dict[str, Any]) -> dict[str, Any]:
            o = m["order"]
            return {
                "id": m["id"],
                "name": m["name"],
                "move_type": m["type"],
                "state": m["state"],
                "payment_state": m["payment"],
                "partner_id": o["partner"],
                "invoice_date": m["date"].isoformat() if m["date"] else False,
                "invoice_date_due": m["due"].isoformat() if m["due"] else False,
                "amount_untaxed": m["untaxed"],
                "amount_tax": m["tax"],
                "amount_total": m["total"],
                "amount_residual": m["residual"],
                "currency_id": CURRENCY[o["currency"]],
                "invoice_origin": o["name"],
                "journal_id": [1, "Customer Invoices"],
                "write_date": _odoo_ts(m["write"]),
            }

        recs = self._dup([_Rec(rec(m), str(m["id"]), m["write"]) for m in self.moves], 2)
        drafts = sum(1 for m in self.moves if m["state"] == "draft")
        return _File(
            "odoo/account.move/account.move-2026-11-20.json",
            "odoo",
            "account.move",
            "invoices",
            "odoo.account.move.api@v1",
            recs,
            notes=f"{drafts} draft invoices with invoice_date false (nullable: loads as null); 2 repeated.",
        )


# -- writing and expectations -----------------------------------------------------------------------------
def _render(f: _File) -> bytes:
    if f.header is not None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(f.header)
        w.writerows(r.payload for r in f.recs)
        return (("\ufeff" if f.bom else "") + buf.getvalue()).encode("utf-8")
    records = [r.payload for r in f.recs]
    if f.json_shape == "jsonl":
        return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in records).encode("utf-8")
    if f.json_shape == "hubspot_results":
        doc: Any = {"results": records, "paging": {"next": {"after": "MjUw", "link": "?after=MjUw"}}}
    elif f.json_shape == "jsonrpc":
        doc = {"jsonrpc": "2.0", "id": 3, "result": records}
    else:
        doc = records
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _expectations(files: list[_File]) -> list[dict[str, Any]]:
    """Replay the warehouse's merge rules over the generated records: what loading each file must do."""
    state: dict[str, dict[str, datetime]] = {}
    out = []
    for f in files:
        table = state.setdefault(f.table, {})
        bad = Counter()
        good: list[_Rec] = []
        for rec in f.recs:
            check = rec.bad
            if (
                check is None
                and f.table == "sales_order_lines"
                and rec.order_ref not in state.get("sales_orders", {})
            ):
                check = CHECK_UNKNOWN_ORDER
            if check:
                bad[check] += 1
            else:
                good.append(rec)
        newest: dict[str, datetime] = {}
        for rec in good:
            assert rec.key is not None and rec.ts is not None
            if rec.key not in newest or rec.ts > newest[rec.key]:
                newest[rec.key] = rec.ts
        inserted = updated = unchanged = 0
        for key, ts in newest.items():
            if key not in table:
                inserted += 1
                table[key] = ts
            elif ts > table[key]:
                updated += 1
                table[key] = ts
            else:
                unchanged += 1  # the same version again, or an older one
        out.append(
            {
                "path": f.rel,
                "system": f.system,
                "entity": f.entity,
                "table": f.table,
                "contract": f.contract,
                "records": len(f.recs),
                "bad_rows": dict(sorted(bad.items())),
                "drift": sorted(f.drift),
                "notes": f.notes,
                "expected": {
                    "status": "succeeded",
                    "rows_read": len(f.recs),
                    "rows_inserted": inserted,
                    "rows_updated": updated,
                    "rows_unchanged": unchanged,
                    "rows_duplicate": len(good) - len(newest),
                    "rows_quarantined": sum(bad.values()),
                },
            }
        )
    out_totals = {t: len(keys) for t, keys in state.items()}
    return [*out, {"totals": out_totals}]


def generate_batch_samples(inbox: Path, seed: int = 7) -> dict[str, Any]:
    """Write the sample exports into ``<inbox>/<system>/<entity>/<file>`` and return their manifest.

    The same seed always writes byte-identical files. Files get increasing modification times in load order
    (one second apart, in the past), so an inbox scan that sorts by mtime loads them in that order.
    The manifest: ``files`` (in load order: path relative to the inbox, system, entity, table, contract,
    records, ``bad_rows`` by dead-letter check, expected ``drift`` findings as "kind:column", and the
    ``expected`` LoadReport counts), ``totals`` (rows per canonical table after loading everything),
    ``stale_updates`` (older versions that must not win), and ``reconciliation`` (deliberate CRM/ERP gaps).
    """
    sample = _Sample(seed)
    files = sample.build()
    *per_file, totals = _expectations(files)
    now = time.time()
    for i, f in enumerate(files):
        path = Path(inbox) / f.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_render(f))
        stamp = now - 60 + i
        os.utime(path, (stamp, stamp))
    return {
        "seed": seed,
        "inbox": str(inbox),
        "files": per_file,
        "load_order": [f["path"] for f in per_file],
        "totals": totals["totals"],
        "bad_rows": sum(sum(f["bad_rows"].values()) for f in per_file),
        "stale_updates": sample.stale,
        "reconciliation": sample.reconciliation,
    }
