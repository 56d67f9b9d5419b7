"""The transactional outbox: the one writer of the ``outbox`` table (docs/ARCHITECTURE.md, "The outbound flow").

A warehouse change that must cause a write in another system inserts an outbox row in the transaction of the
change (``capture``, called at the end of ``CanonicalStage.merge``); the relay (``outbound/relay.py``) reads
unsent rows in id order (``claim_unsent``), publishes them to the step queues and marks them sent
(``mark_sent``). A row's ``key`` is the message's idempotency key: capturing the same change twice (a
duplicate delivery, a re-merge of the same file) inserts nothing the second time.

Payloads hold ids only (deal, order, tracking code), never personal data: the step reads what it needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from integration_assets.policies import OutboundPolicy, load_policies
from integration_assets.warehouse.schema import outbox

# The tables whose merge may cause an outbound write; a merge of any other table returns at once.
TRIGGER_TABLES = frozenset({"deals", "sales_orders", "shipment_events", "payments"})
_CHUNK = 1000


@dataclass(frozen=True)
class OutboxRow:
    """One message for a step (``outbound/steps``); ``payload`` holds ids only."""

    key: str
    topic: str
    step: str
    chain_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class UnsentRow:
    id: int
    key: str
    topic: str
    step: str
    chain_id: str
    payload: str  # the JSON text as stored
    created_at: datetime
    attempts: int


def _now() -> datetime:
    return datetime.now(UTC)


def won_key(deal_id: str, generation: int = 1) -> str:
    """The outbox key of a deal's won event: ``deal.won:<id>``, and ``deal.won:<id>:<n>`` for a rewin."""
    return f"deal.won:{deal_id}" if generation <= 1 else f"deal.won:{deal_id}:{generation}"


def money_text(value: Any) -> str:
    """An amount as the fixed text used in keys (``1500.00``), whatever the dialect returned."""
    return format(Decimal(str(value)).quantize(Decimal("0.01")), "f")


def enqueue(conn: sa.Connection, rows: Sequence[OutboxRow | Mapping[str, Any]]) -> int:
    """Insert ``rows`` unless their key is already in the outbox (sent or not); returns how many were new.

    In the caller's transaction: the outbox row commits with the change that caused it, or not at all."""
    if not rows:
        return 0
    now = _now()
    values = []
    for r in rows:
        d = (
            {"key": r.key, "topic": r.topic, "step": r.step, "chain_id": r.chain_id, "payload": r.payload}
            if isinstance(r, OutboxRow)
            else dict(r)
        )
        payload = d["payload"]
        values.append(
            {
                "key": d["key"],
                "topic": d["topic"],
                "step": d["step"],
                "chain_id": str(d["chain_id"]),
                "payload": payload
                if isinstance(payload, str)
                else json.dumps(payload, sort_keys=True, default=str),
                "created_at": now,
                "attempts": 0,
            }
        )
    values = list({v["key"]: v for v in values}.values())  # one statement must not conflict with itself
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    added = 0
    for start in range(0, len(values), _CHUNK):
        stmt = insert(outbox).on_conflict_do_nothing(index_elements=[outbox.c.key])
        res = conn.execute(stmt.returning(outbox.c.id), values[start : start + _CHUNK])
        added += len(res.all())
    return added


def claim_unsent(conn: sa.Connection, limit: int) -> list[UnsentRow]:
    """The oldest ``limit`` unsent rows, in id order (the order they were captured in).

    The relay runs one at a time per warehouse (``outbound/relay.py`` holds its lock), so the rows it reads
    are not published by anyone else meanwhile and a chain's messages go out in order."""
    c = outbox.c
    rows = conn.execute(
        sa.select(c.id, c.key, c.topic, c.step, c.chain_id, c.payload, c.created_at, c.attempts)
        .where(c.sent_at.is_(None))
        .order_by(c.id)
        .limit(limit)
    ).all()
    return [UnsentRow(*r) for r in rows]


def mark_sent(conn: sa.Connection, ids: Sequence[int]) -> int:
    """Rows published (confirmed by the queue): set ``sent_at``, count the attempt."""
    if not ids:
        return 0
    c = outbox.c
    n = 0
    for start in range(0, len(ids), _CHUNK):
        part = list(ids[start : start + _CHUNK])
        n += conn.execute(
            sa.update(outbox)
            .where(c.id.in_(part), c.sent_at.is_(None))
            .values(sent_at=_now(), attempts=c.attempts + 1)
        ).rowcount
    return n


def mark_attempt_failed(conn: sa.Connection, ids: Sequence[int]) -> None:
    """A publish of these rows failed (queue down): count the attempt, leave them unsent."""
    if ids:
        conn.execute(
            sa.update(outbox).where(outbox.c.id.in_(list(ids))).values(attempts=outbox.c.attempts + 1)
        )


# -- capture ------------------------------------------------------------------------------------------------
def capture(conn: sa.Connection, table_name: str, stage_table: str) -> int:
    """Insert the outbox rows a merge of ``table_name`` causes, in the merge's transaction; returns how many.

    Called at the end of ``CanonicalStage.merge`` with the staging table's name. Only the trigger tables run
    a query, and it reads the merged rows of the staged keys only (joined to the staging table), so a merge
    of contacts costs nothing and a merge of deals costs one join over its own keys. The rules: see
    docs/ARCHITECTURE.md, "The outbound flow"."""
    if table_name not in TRIGGER_TABLES:
        return 0
    policy = load_policies().outbound
    if not policy.enabled:
        return 0
    rows: list[OutboxRow]
    if table_name == "deals":
        rows = _deals(conn, stage_table, policy)
    elif table_name == "sales_orders":
        rows = _cancelled_orders(conn, stage_table)
    elif table_name == "shipment_events":
        rows = _tracking(conn, stage_table)
    else:
        rows = _payments(conn, stage_table, policy)
    return enqueue(conn, rows)


def _staged(conn: sa.Connection, stage_table: str) -> str:
    q = conn.dialect.identifier_preparer.quote(stage_table)
    return f"(SELECT DISTINCT source_system, source_id FROM {q})"


def _deals(conn: sa.Connection, stage_table: str, policy: OutboundPolicy) -> list[OutboxRow]:
    """Won deals start a chain (trigger ``hubspot_deal_won``); a won deal whose amount differs from its
    order's is a ``deal.changed``; with ``rewin: new_order`` a reopened deal leaves a marker, and winning it
    again starts the next generation."""
    rewin = policy.rewin == "new_order"
    starts = policy.trigger == "hubspot_deal_won"
    sql = f"""
        SELECT d.source_id, d.amount, d.is_closed_won, c.generation, c.order_id, c.amount_at_order
        FROM deals d
        JOIN {_staged(conn, stage_table)} s ON s.source_system = d.source_system AND s.source_id = d.source_id
        LEFT JOIN outbound_chains c ON c.chain_id = d.source_id
        WHERE d.source_system = 'hubspot' AND d.archived_at IS NULL
          AND (d.is_closed_won = :won OR c.chain_id IS NOT NULL)"""
    out: list[OutboxRow] = []
    reopened_keys: dict[str, str] = {}
    found = conn.execute(sa.text(sql), {"won": True}).all()
    if rewin:
        # Which chains were reopened since their generation started (a marker row, see below).
        keys = [f"deal.reopened:{r[0]}:{r[3]}" for r in found if r[3] is not None]
        for start in range(0, len(keys), _CHUNK):
            for (k,) in conn.execute(
                sa.select(outbox.c.key).where(outbox.c.key.in_(keys[start : start + _CHUNK]))
            ):
                reopened_keys[k.split(":")[1]] = k
    for deal_id, amount, won, generation, order_id, amount_at_order in found:
        deal_id = str(deal_id)
        if not won:
            if rewin and generation is not None:
                # The deal left closed-won after its chain started: remembered so that winning it again is a
                # rewin, not a re-merge of the same won deal. Published to no step (the relay only marks it).
                out.append(
                    OutboxRow(
                        f"deal.reopened:{deal_id}:{generation}",
                        "deal.reopened",
                        "",
                        deal_id,
                        {"deal_id": deal_id, "generation": generation},
                    )
                )
            continue
        if generation is None:
            if starts:
                out.append(
                    OutboxRow(
                        won_key(deal_id),
                        "deal.won",
                        "odoo_order",
                        deal_id,
                        {"deal_id": deal_id, "generation": 1},
                    )
                )
            continue
        if rewin and deal_id in reopened_keys:
            n = int(generation) + 1
            out.append(
                OutboxRow(
                    won_key(deal_id, n),
                    "deal.won",
                    "odoo_order",
                    deal_id,
                    {"deal_id": deal_id, "generation": n},
                )
            )
            continue
        if order_id is not None and amount is not None and amount_at_order is not None:
            if Decimal(str(amount)) != Decimal(str(amount_at_order)):
                text = money_text(amount)
                out.append(
                    OutboxRow(
                        f"deal.changed:{deal_id}:{text}",
                        "deal.changed",
                        "odoo_order",
                        deal_id,
                        {"deal_id": deal_id, "generation": int(generation), "amount": text},
                    )
                )
    return out


def _cancelled_orders(conn: sa.Connection, stage_table: str) -> list[OutboxRow]:
    """An Odoo order of a chain merged in state ``cancel``: compensate (no label, or refund / review)."""
    sql = f"""
        SELECT c.chain_id, c.generation, o.source_id
        FROM sales_orders o
        JOIN {_staged(conn, stage_table)} s ON s.source_system = o.source_system AND s.source_id = o.source_id
        JOIN outbound_chains c ON c.order_id = o.source_id
        WHERE o.source_system = 'odoo' AND o.state = 'cancel'"""
    return [
        OutboxRow(
            f"order.cancelled:{chain}:{gen}",
            "order.cancelled",
            "compensate",
            chain,
            {"deal_id": chain, "generation": int(gen), "order_id": str(order)},
        )
        for chain, gen, order in conn.execute(sa.text(sql)).all()
    ]


def _tracking(conn: sa.Connection, stage_table: str) -> list[OutboxRow]:
    """A tracker event for a chain's tracking code: the shipment status goes to HubSpot."""
    sql = f"""
        SELECT c.chain_id, c.generation, e.source_system, e.source_id, e.tracking_code, e.status,
               e.source_updated_at
        FROM shipment_events e
        JOIN {_staged(conn, stage_table)} s ON s.source_system = e.source_system AND s.source_id = e.source_id
        JOIN outbound_chains c ON c.tracking_code = e.tracking_code
        WHERE e.tracking_code IS NOT NULL"""
    out = []
    for chain, gen, system, event, code, status, at in conn.execute(sa.text(sql)).all():
        out.append(
            OutboxRow(
                f"tracking.updated:{chain}:{system}:{event}",
                "tracking.updated",
                "hubspot_tracking",
                chain,
                {
                    "deal_id": chain,
                    "generation": int(gen),
                    "tracking_code": code,
                    "status": status,
                    "event_id": f"{system}:{event}",
                    "status_at": at.isoformat() if isinstance(at, datetime) else str(at),
                },
            )
        )
    return out


def _payments(conn: sa.Connection, stage_table: str, policy: OutboundPolicy) -> list[OutboxRow]:
    """A succeeded Stripe payment for a chain's order releases its label (``require_payment``); with
    ``trigger: stripe_payment_succeeded`` a succeeded payment starts the chain of its deal: ``order_id``
    names an Odoo order whose ``client_order_ref`` is ``hubspot-deal:<id>``, or the won deal itself."""
    staged = _staged(conn, stage_table)
    out: list[OutboxRow] = []
    if policy.require_payment:
        sql = f"""
            SELECT DISTINCT c.chain_id, c.generation, c.order_id
            FROM payments p
            JOIN {staged} s ON s.source_system = p.source_system AND s.source_id = p.source_id
            JOIN outbound_chains c ON c.order_id = p.order_id
            WHERE p.status = 'succeeded'"""
        for chain, gen, order in conn.execute(sa.text(sql)).all():
            out.append(
                OutboxRow(
                    f"payment.succeeded:{chain}:{gen}",
                    "payment.succeeded",
                    "easypost_label",
                    chain,
                    {"deal_id": chain, "generation": int(gen), "order_id": str(order)},
                )
            )
    if policy.trigger == "stripe_payment_succeeded":
        sql = f"""
            SELECT DISTINCT d.source_id
            FROM payments p
            JOIN {staged} s ON s.source_system = p.source_system AND s.source_id = p.source_id
            LEFT JOIN sales_orders o ON o.source_system = 'odoo' AND o.source_id = p.order_id
            JOIN deals d ON d.source_system = 'hubspot' AND d.archived_at IS NULL AND d.is_closed_won = :won
                AND (d.source_id = p.order_id OR o.client_order_ref = 'hubspot-deal:' || d.source_id)
            LEFT JOIN outbound_chains c ON c.chain_id = d.source_id
            WHERE p.status = 'succeeded' AND p.order_id IS NOT NULL AND c.chain_id IS NULL"""
        for (deal_id,) in conn.execute(sa.text(sql), {"won": True}).all():
            out.append(
                OutboxRow(
                    won_key(str(deal_id)),
                    "deal.won",
                    "odoo_order",
                    str(deal_id),
                    {"deal_id": str(deal_id), "generation": 1},
                )
            )
    return out
