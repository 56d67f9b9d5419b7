"""Outbound chains as a run leaves them, written straight into a migrated warehouse (SQLite or PostgreSQL) for
the read-side tests (queries, CLI, checks): a won deal, its chain row, the ledger rows of each step, the
pulled Odoo order, the outbox, tracking events and dead letters."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.dead_letters import store
from integration_assets.outbound import ledger
from integration_assets.warehouse import outbox
from integration_assets.warehouse.schema import CANONICAL_TABLES

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)


def canonical(engine: sa.Engine, table: str, system: str, **row: Any) -> None:
    """One canonical row with its lineage filled in."""
    with engine.begin() as conn:
        conn.execute(
            CANONICAL_TABLES[table]
            .insert()
            .values(
                source_system=system,
                source_updated_at=row.pop("source_updated_at", NOW - timedelta(days=1)),
                mapping_version=f"test.{table}@v1",
                load_id="ld_test",
                row_hash=next(_seq),
                **row,
            )
        )


def won_deal(engine: sa.Engine, deal_id: str, *, at: datetime, won: bool = True) -> None:
    canonical(
        engine,
        "deals",
        "hubspot",
        source_id=deal_id,
        source_updated_at=at,
        stage="closedwon" if won else "appointmentscheduled",
        pipeline="default",
        amount=1200,
        is_closed_won=won,
    )


def order(engine: sa.Engine, order_id: str, deal_id: str, *, state: str = "sale", gen: int = 1) -> None:
    """The Odoo sale.order as a pull puts it in the warehouse (client_order_ref = the chain's reference)."""
    ref = f"hubspot-deal:{deal_id}" + (f":{gen}" if gen > 1 else "")
    canonical(
        engine,
        "sales_orders",
        "odoo",
        source_id=order_id,
        name=f"S{int(order_id):05d}",
        state=state,
        client_order_ref=ref,
        amount_total=1200,
        currency="USD",
    )


@dataclass
class Chain:
    """The ids of a seeded chain."""

    deal_id: str
    won_at: datetime
    order_id: str | None = None
    shipment_id: str | None = None
    tracking_code: str | None = None


def ledger_row(
    engine: sa.Engine,
    step: str,
    chain_id: str,
    *,
    status: str = "done",
    target: str,
    target_id: str | None,
    at: datetime,
    attempts: int = 1,
    latency_ms: int = 120,
    key: str | None = None,
) -> None:
    """A ledger row as the runner leaves it: ``attempts`` starts, the first ``latency_ms`` before ``at``."""
    key = key or ledger.ledger_key(step, chain_id)
    first = at - timedelta(milliseconds=latency_ms)
    with engine.begin() as conn:
        for i in range(attempts):
            ledger.start(
                conn,
                key,
                step=step,
                chain_id=chain_id,
                target_system=target,
                now=first + i * (at - first) / attempts,
            )
        ledger.finish(
            conn,
            key,
            status,
            target_id=target_id,
            target_ref=f"hubspot-deal:{chain_id}" if step == "odoo_order" else None,
            now=at,
        )


def chain(
    engine: sa.Engine,
    deal_id: str,
    *,
    won_at: datetime,
    upto: str | None = "writeback",
    status: str | None = None,
    order_id: str | None = None,
    pulled: bool = True,
) -> Chain:
    """A won deal and its chain, done up to ``upto`` (None: won only, "order", "label", "writeback");
    ``pulled`` also puts the Odoo order in sales_orders as a pull would."""
    won_deal(engine, deal_id, at=won_at)
    c = Chain(deal_id, won_at)
    t = won_at
    values: dict[str, Any] = {"status": "won", "won_at": won_at}
    if upto in ("order", "label", "writeback"):
        c.order_id = order_id or str(1000 + int(deal_id) % 1000)
        t += timedelta(seconds=2)
        ledger_row(engine, "odoo_order", deal_id, target="odoo", target_id=c.order_id, at=t, attempts=2)
        if pulled:
            order(engine, c.order_id, deal_id)
        values.update(
            status="ordered",
            amount_at_order=1200,
            currency="USD",
            partner_id="7",
            order_id=c.order_id,
            order_name=f"S{int(c.order_id):05d}",
            picking_ids=[int(c.order_id) + 5000],
        )
    if upto in ("label", "writeback"):
        c.shipment_id, c.tracking_code = f"shp_{deal_id}", f"EZ{deal_id}"
        t += timedelta(seconds=2)
        ledger_row(engine, "easypost_label", deal_id, target="easypost", target_id=c.shipment_id, at=t)
        values.update(
            status="labelled",
            shipment_id=c.shipment_id,
            tracking_code=c.tracking_code,
            label_url=f"https://easypost.test/label/{c.shipment_id}.png",
            shipment_status="pre_transit",
            shipment_status_at=t,
        )
    if upto == "writeback":
        t += timedelta(seconds=1)
        ledger_row(engine, "odoo_tracking", deal_id, target="odoo", target_id=c.order_id, at=t)
        ledger_row(engine, "hubspot_writeback", deal_id, target="hubspot", target_id=deal_id, at=t)
        values["status"] = "written_back"
    if status:
        values["status"] = status
    with engine.begin() as conn:
        ledger.update_chain(conn, deal_id, values, now=t)
    return c


def outbox_rows(engine: sa.Engine, *rows: tuple[str, str, str]) -> None:
    """(key, step, chain id) rows captured now, as the merge's capture writes them."""
    with engine.begin() as conn:
        outbox.enqueue(
            conn,
            [
                outbox.OutboxRow(key, key.split(":", 1)[0], step, chain_id, {"deal_id": chain_id})
                for key, step, chain_id in rows
            ],
        )


def tracking_event(engine: sa.Engine, tracking_code: str, status: str, *, at: datetime) -> None:
    canonical(
        engine,
        "shipment_events",
        "easypost",
        source_id=f"trk_{tracking_code}",
        source_updated_at=at,
        tracking_code=tracking_code,
        carrier="USPS",
        status=status,
        event_type="tracker.updated",
    )


def outbound_dead_letter(engine: sa.Engine, chain_id: str, step: str, *, target: str = "easypost") -> None:
    """The dead letter the runner writes for a write the target rejected."""
    with engine.begin() as conn:
        store.write_outbound_dead_letters(
            conn,
            [
                {
                    "ledger_key": ledger.ledger_key(step, chain_id),
                    "source_system": target,
                    "entity": step,
                    "natural_key": chain_id,
                    "check_name": "target_rejected",
                    "reason": "ADDRESS.VERIFY.FAILURE: street1",
                    "column_name": "street1",
                    "contract_version": "easypost/shipment@v1",
                    "raw_record": json.dumps({"chain_id": chain_id, "step": step}),
                    "attempts": 1,
                }
            ],
        )
