"""The world of the chain acceptance tests (tests/outbound/test_chain_*.py).

Real components everywhere but the SaaS APIs: FakeOdoo, FakeEasyPost and FakeHubSpot answer on loopback in
their documented wire formats, the connectors talk to them over HTTP with short timeouts (a "lost answer" is a
client timeout after the fake committed), won deals reach the warehouse through the real path (HubSpot pull →
inbox JSONL → ingest → merge, which captures the outbox rows), and the relay and the steps run on the SQL queue
or RabbitMQ, on SQLite or PostgreSQL. The policy file is a test copy with small backoffs
(INTEGRATION_POLICIES_FILE).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from integration_assets.connectors._retry import HttpRetry
from integration_assets.connectors.easypost.client import EasyPostClient
from integration_assets.connectors.hubspot.client import HubSpotClient
from integration_assets.connectors.landing import pull_entity, write_jsonl_atomic
from integration_assets.connectors.odoo.client import OdooClient
from integration_assets.connectors.odoo.writer import OdooWriter
from integration_assets.events.drain import drain, open_drain_queue
from integration_assets.ingest.inbox import scan
from integration_assets.ingest.process import process
from integration_assets.outbound import runner
from integration_assets.outbound.runner import StepReport, open_step_queue, run_all, run_step
from integration_assets.outbound.steps.base import OutboxMessage
from integration_assets.outbound.targets import Targets
from integration_assets.policies import DEFAULT_POLICIES_FILE, load_policies
from integration_assets.providers import PROVIDERS
from integration_assets.queue.rabbitmq import RabbitMQQueue
from integration_assets.queue.rabbitmq import consumer as rabbit_consumer
from integration_assets.sandbox.fakes.easypost import FakeEasyPost
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import dead_letters, outbound_chains, outbound_ledger, outbox
from integration_assets.webhooks.receive import provider_messages

# A client gives up on an answer after this long; a fake "loses" an answer by holding it longer.
CLIENT_TIMEOUT_S = 0.6
FAST_RETRY = HttpRetry(max_attempts=2, backoff_base=0.02, backoff_cap=0.05, max_wait=0.5)

# The test copy of policies.yaml changes the outbound section only: small backoffs, fewer threads.
OUTBOUND_POLICY: dict[str, Any] = {
    "attempts": {"max": 8, "backoff_base": "0.05s", "backoff_cap": "0.2s"},
    "concurrency": {"odoo": 4, "easypost": 4, "hubspot": 4},
}

SKUS = ("SKU-0001", "SKU-0002", "SKU-0003")
# The chain's forward steps (tracking updates and compensation run only in the tests that need them: every
# step run on an empty RabbitMQ queue waits 0.5 s for a first message).
FORWARD = ("odoo_order", "easypost_label", "odoo_tracking", "hubspot_writeback")


def queue_url_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    """``sql`` (None: the default SQL queue in the warehouse) or the test RabbitMQ with a prefix of its own."""
    if kind == "sql":
        return None
    amqp = str(request.getfixturevalue("amqp_url"))
    sep = "&" if "?" in amqp else "?"
    return f"{amqp}{sep}prefix=ia{time.monotonic_ns() % 10**9}"


def write_policy(tmp: Path, monkeypatch: pytest.MonkeyPatch, **outbound: Any) -> Path:
    """A copy of the shipped policies with small backoffs and ``outbound`` overrides, in force for the test."""
    raw = yaml.safe_load(DEFAULT_POLICIES_FILE.read_text(encoding="utf-8"))
    raw["outbound"] = {**(raw.get("outbound") or {}), **OUTBOUND_POLICY, **outbound}
    path = tmp / "policies.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(path))
    return path


class Crash(Exception):
    """The consumer process dies at a kill point (nothing after it runs: no ledger commit, or no ack)."""


def crash_once(point: str, fired: list[str]) -> Callable[[str, OutboxMessage], None]:
    """A runner hook that kills the consumer the first time it reaches ``point`` (recorded in ``fired``)."""

    def hook(where: str, msg: OutboxMessage) -> None:
        if where == point and not fired:
            fired.append(msg.key)
            raise Crash(f"killed at {point} after {msg.key}")

    return hook


@dataclass
class Deal:
    deal_id: str
    company_id: str
    amount: str
    lines: list[tuple[str, int, str]] = field(default_factory=list)  # (sku, quantity, price)


class ChainWorld:
    """Three fakes, the clients pointed at them, the warehouse and the queue of one test."""

    def __init__(self, engine: sa.Engine, tmp: Path, *, queue_url: str | None = None) -> None:
        self.engine = engine
        self.tmp = tmp
        self.queue_url = queue_url
        self.odoo = FakeOdoo()
        self.easypost = FakeEasyPost()
        self.hubspot = FakeHubSpot()
        self.deals: dict[str, Deal] = {}
        self.partners: dict[str, int] = {}  # hubspot company id -> odoo partner id
        self.products: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------
    def __enter__(self) -> ChainWorld:
        for fake in (self.odoo, self.easypost, self.hubspot):
            fake.start()
        self.targets = Targets(
            odoo=OdooWriter(
                self.odoo.url,
                self.odoo.db,
                self.odoo.login,
                self.odoo.api_key,
                retry=FAST_RETRY,
                timeout=CLIENT_TIMEOUT_S,
            ),
            easypost=EasyPostClient(
                self.easypost.url, self.easypost.api_key, retry=FAST_RETRY, timeout=CLIENT_TIMEOUT_S
            ),
            hubspot=HubSpotClient(
                self.hubspot.token, self.hubspot.url, retry=FAST_RETRY, timeout=CLIENT_TIMEOUT_S
            ),
        )
        self._seed_odoo_reference()
        return self

    def __exit__(self, *exc: object) -> None:
        for client in (self.targets.odoo, self.targets.easypost, self.targets.hubspot):
            with contextlib.suppress(Exception):
                client.close()
        for fake in (self.odoo, self.easypost, self.hubspot):
            fake.stop()
        if self.queue_url and self.queue_url.startswith("amqp"):
            # Each step has its own quorum queues (main, retry tiers, dead letters): remove this test's.
            for step in runner.STEP_ORDER:
                RabbitMQQueue(runner.step_queue_url(step, self.queue_url)).delete_topology()

    def _seed_odoo_reference(self) -> None:
        for i, sku in enumerate(SKUS):
            self.products[sku] = self.odoo.add_product(
                sku, name=f"Widget {i}", price=10.0 + i, qty_available=1000
            )

    # -- data --------------------------------------------------------------------------------------------
    def add_deal(
        self,
        i: int,
        *,
        link: str = "stored",  # stored | domain | new
        lines: list[tuple[str, int, str]] | None = None,
        stage: str = "closedwon",
        currency: str = "USD",
        zip_code: str = "94105",
    ) -> Deal:
        """A HubSpot company (its Odoo partner found by the stored link or by domain, or none yet) and a deal
        of it with line items (sku, quantity, price)."""
        domain = f"company{i:04d}.example.com"
        partner: int | None = None
        if link != "new":
            partner = self.odoo.add_partner(
                f"Company {i:04d} Ltd",
                street=f"{100 + i} Market Street",
                city="San Francisco",
                state_code="CA",
                zip=zip_code,
                email=f"shipping@{domain}",
                phone="4155550100",
                website=f"https://www.{domain}" if link == "domain" else None,
            )
        company_id = self.hubspot.add(
            "companies",
            {
                "name": f"Company {i:04d} Ltd",
                "domain": domain,
                "country": "United States",
                "odoo_partner_id": str(partner) if link == "stored" and partner else None,
            },
        )
        if partner is not None:
            self.partners[company_id] = partner
        lines = (
            lines if lines is not None else [(SKUS[i % len(SKUS)], 1 + i % 3, "25.00"), (SKUS[0], 1, "10.00")]
        )
        deal_id = self.hubspot.add_deal(
            {"dealname": f"Deal {i:04d}", "dealstage": stage},
            company=company_id,
            items=[
                {"sku": sku, "name": f"{sku} x{qty}", "quantity": qty, "price": price, "currency": currency}
                for sku, qty, price in lines
            ],
        )
        amount = str(self.hubspot.objects["deals"][deal_id]["properties"].get("amount") or "0")
        deal = Deal(deal_id, company_id, amount, list(lines))
        self.deals[deal_id] = deal
        return deal

    def set_stage(self, deal_id: str, stage: str, **props: Any) -> None:
        self.hubspot.touch("deals", [deal_id], dealstage=stage, **props)

    # -- the real ingest path ----------------------------------------------------------------------------
    def pull_and_ingest(self, entities: tuple[str, ...] = ("companies", "deals")) -> None:
        """HubSpot pull (full) → inbox JSONL → ingest → merge (the merge captures the outbox rows)."""
        client = HubSpotClient(self.hubspot.token, self.hubspot.url, retry=FAST_RETRY)
        try:
            for entity in entities:
                pull_entity(client, entity, full=True)
        finally:
            client.close()
        for f in scan():
            report = process(f, engine=self.engine)
            assert report.status in ("succeeded", "duplicate_file"), (f.path.name, report.status)

    def pull_odoo_orders(self) -> None:
        """Odoo pull of sale orders (full) → inbox → ingest: the warehouse sees Odoo's orders (a duplicate or a
        cancellation shows there; the merge captures ``order.cancelled``)."""
        client = OdooClient(self.odoo.url, self.odoo.db, self.odoo.login, self.odoo.api_key, retry=FAST_RETRY)
        try:
            pull_entity(client, "sale.order", full=True)
        finally:
            client.close()
        for f in scan():
            report = process(f, engine=self.engine)
            assert report.status in ("succeeded", "duplicate_file"), (f.path.name, report.status)

    def land_deals(self, records: list[dict[str, Any]], name: str) -> None:
        """HubSpot API deal records (as a pull lands them) written to the inbox by hand, then loaded: for
        versions a pull cannot produce (an older one arriving late)."""
        folder = get_settings().inbox_dir / "hubspot" / "deals"
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(folder / f"{name}.jsonl", records)
        for f in scan():
            report = process(f, engine=self.engine)
            assert report.status in ("succeeded", "duplicate_file"), (f.path.name, report.status)

    def deliver_events(self, provider: str, docs: list[Any]) -> None:
        """Verified webhook deliveries (an event, or HubSpot's array of events) → the events queue (messages
        built by the receiver's own code) → a drain, whose merge captures the outbox rows."""
        headers = {"content-type": "application/json"}
        now = datetime.now(UTC)
        messages = [
            m
            for d in docs
            for m in provider_messages(PROVIDERS[provider], d, json.dumps(d).encode(), headers, now)
        ]
        queue = open_drain_queue()
        try:
            queue.publish_many(messages)
            report = drain(queue, engine=self.engine)
        finally:
            queue.close()
        assert report.balanced and report.totals.events_in == len(messages), report
        assert report.totals.dead_lettered == report.totals.retried == 0, report

    # -- running -----------------------------------------------------------------------------------------
    def pending(self, steps: Sequence[str] = FORWARD) -> int:
        """Unsent outbox rows plus messages waiting in the step queues (delayed retries included)."""
        with self.engine.connect() as conn:
            unsent = conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.sent_at.is_(None), outbox.c.step.in_(list(steps)))
            ).scalar_one()
        depth = 0
        for step in steps:
            q = open_step_queue(step, self.queue_url, engine=self.engine)
            try:
                depth += q.depth()
            finally:
                q.close()
        return int(unsent) + depth

    def drain(
        self, *, steps: Sequence[str] = FORWARD, deadline_s: float = 30.0, dry_run: bool = False
    ) -> dict[str, StepReport]:
        """Relay and run ``steps`` until nothing is pending for them (retries with backoff come back in
        between)."""
        total: dict[str, StepReport] = {}
        end = time.monotonic() + deadline_s
        while True:
            reports = run_all(
                self.engine, queue_url=self.queue_url, targets=self.targets, dry_run=dry_run, steps=steps
            )
            for name, r in reports.items():
                total.setdefault(name, StepReport(name)).add(r)
            if dry_run or self.pending(steps) == 0:
                return total
            if time.monotonic() > end:
                raise AssertionError(f"still pending after {deadline_s} s: {self.pending(steps)} message(s)")
            time.sleep(0.05)

    def run_step_once(self, step: str, **kw: Any) -> StepReport:
        return run_step(self.engine, step, queue_url=self.queue_url, targets=self.targets, **kw)

    # -- what the tests assert ---------------------------------------------------------------------------
    def odoo_orders(self) -> Counter[str]:
        """client_order_ref → number of sale orders with it."""
        return Counter(
            str(o["client_order_ref"])
            for o in self.odoo.orders()
            if str(o.get("client_order_ref") or "").startswith("hubspot-deal:")
        )

    def odoo_order(self, deal_id: str, generation: int = 1) -> dict[str, Any]:
        ref = f"hubspot-deal:{deal_id}" + (f":{generation}" if generation > 1 else "")
        found = self.odoo.orders(ref)
        assert len(found) == 1, (ref, len(found))
        return found[0]

    def deal_patches(self) -> Counter[str]:
        """Deal id → PATCHes HubSpot committed (an answer lost after the commit counts too)."""
        with self.hubspot.lock:
            return Counter(str(u["deal_id"]) for u in self.hubspot.deal_updates)

    def deal_property(self, deal_id: str, name: str) -> Any:
        with self.hubspot.lock:
            return self.hubspot.objects["deals"][deal_id]["properties"].get(name)

    def chains(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.chain_id: dict(r._mapping) for r in conn.execute(sa.select(outbound_chains))}

    def ledger(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {r.key: dict(r._mapping) for r in conn.execute(sa.select(outbound_ledger))}

    def dead_letters(self, stage: str = "outbound") -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(dead_letters).where(dead_letters.c.stage == stage)).all()
        return [dict(r._mapping) for r in rows]


@contextlib.contextmanager
def chain_world(
    engine: sa.Engine,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    queue_url: str | None = None,
    **policy: Any,
) -> Iterator[ChainWorld]:
    """The world of one test, with the policy copy (``policy``: outbound overrides, e.g. rewin="new_order")."""
    write_policy(tmp, monkeypatch, **policy)
    if queue_url and queue_url.startswith("amqp"):
        # A step run on an empty queue waits this long for a first push from the broker; on loopback the
        # first message of a non-empty queue arrives in a few ms. The drain loop re-checks queue depths, so a
        # shorter wait costs rounds, never messages.
        monkeypatch.setattr(rabbit_consumer, "BATCH_FIRST_WAIT_S", 0.1)
    assert load_policies().outbound.attempts.max == 8
    with ChainWorld(engine, tmp, queue_url=queue_url) as world:
        yield world
