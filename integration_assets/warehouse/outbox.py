"""The transactional outbox: the one writer of the ``outbox`` table (docs/ARCHITECTURE.md, "The outbound flow").

A warehouse change that must cause a write in another system inserts an outbox row in the transaction of the
change (``capture``, called at the end of ``CanonicalStage.merge``); the relay (``outbound/relay.py``) reads
unsent rows in id order (``claim_unsent``), publishes them to the step queues and marks them sent
(``mark_sent``). A row's ``key`` is the message's idempotency key: capturing the same change twice (a
duplicate delivery, a re-merge of the same file) inserts nothing the second time.

Payloads hold ids only (deal, order, tracking code), never personal data: the step reads what it needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

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

    In the caller's transaction: the outbox row commits with the change that caused it, or not at all. One
    statement per chunk, the rows passed as one JSON array (a capture of 20k won deals inserts in well under a
    second; a bound row per parameter set took several), inserted in list order so ids keep that order."""
    if not rows:
        return 0
    values: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = (
            {"key": r.key, "topic": r.topic, "step": r.step, "chain_id": r.chain_id, "payload": r.payload}
            if isinstance(r, OutboxRow)
            else dict(r)
        )
        payload = d["payload"]
        values.setdefault(  # the first of a key wins, as a second statement would leave it
            str(d["key"]),
            {
                "key": str(d["key"]),
                "topic": str(d["topic"]),
                "step": str(d["step"]),
                "chain_id": str(d["chain_id"]),
                "payload": payload
                if isinstance(payload, str)
                else json.dumps(payload, sort_keys=True, default=str),
            },
        )
    items = list(values.values())
    if conn.dialect.name == "postgresql":
        sql = """
            INSERT INTO outbox (key, topic, step, chain_id, payload, created_at, attempts)
            SELECT e.v->>'key', e.v->>'topic', e.v->>'step', e.v->>'chain_id', e.v->>'payload', :now, 0
            FROM json_array_elements(CAST(:rows AS json)) WITH ORDINALITY AS e(v, n)
            ORDER BY e.n
            ON CONFLICT (key) DO NOTHING"""
    else:
        sql = """
            INSERT INTO outbox (key, topic, step, chain_id, payload, created_at, attempts)
            SELECT json_extract(value, '$.key'), json_extract(value, '$.topic'), json_extract(value, '$.step'),
                   json_extract(value, '$.chain_id'), json_extract(value, '$.payload'), :now, 0
            FROM json_each(:rows) WHERE true
            ORDER BY json_each.key
            ON CONFLICT (key) DO NOTHING"""
    now = _now()
    if conn.dialect.name != "postgresql":
        now_param: Any = now.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite DateTime text
    else:
        now_param = now
    added = 0
    for start in range(0, len(items), _CHUNK * 10):
        part = json.dumps(items[start : start + _CHUNK * 10])
        added += int(conn.execute(sa.text(sql), {"rows": part, "now": now_param}).rowcount)
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
def before_merge(conn: sa.Connection, table_name: str, stage_table: str) -> dict[str, bool] | None:
    """What ``capture`` needs to know from before the merge, read just before it (same transaction).

    For ``deals``: whether each deal staged as won was already stored, and as won (id -> was won); a deal
    absent from the dict is new to the warehouse. None for every other table (no query)."""
    if table_name != "deals":
        return None
    q = conn.dialect.identifier_preparer.quote(stage_table)
    sql = f"""
        SELECT d.source_id, d.is_closed_won FROM deals d
        WHERE d.source_system = 'hubspot' AND d.source_id IN (
            SELECT s.source_id FROM {q} s WHERE s.source_system = 'hubspot' AND s.is_closed_won = :won)"""
    return {str(i): bool(w) for i, w in conn.execute(sa.text(sql), {"won": True})}


def capture(
    conn: sa.Connection, table_name: str, stage_table: str, before: dict[str, bool] | None = None
) -> int:
    """Insert the outbox rows a merge of ``table_name`` causes, in the merge's transaction; returns how many.

    Called at the end of ``CanonicalStage.merge`` with the staging table's name (and, for deals, what
    ``before_merge`` read). Only the trigger tables run a query, and it reads the merged rows of the staged
    keys only (joined to the staging table), so a merge of contacts costs nothing and a merge of deals costs
    one join over its own keys. The rules: see docs/ARCHITECTURE.md, "The outbound flow"."""
    if table_name not in TRIGGER_TABLES:
        return 0
    policy = load_policies().outbound
    if not policy.enabled:
        return 0
    rows: list[OutboxRow]
    if table_name == "deals":
        rows = _deals(conn, stage_table, policy, before or {})
    elif table_name == "sales_orders":
        rows = _cancelled_orders(conn, stage_table)
    elif table_name == "shipment_events":
        rows = _tracking(conn, stage_table)
    else:
        rows = _payments(conn, stage_table, policy)
    return enqueue(conn, rows)


def _staged(conn: sa.Connection, stage_table: str, where: str = "") -> str:
    q = conn.dialect.identifier_preparer.quote(stage_table)
    return f"(SELECT DISTINCT source_system, source_id FROM {q} {where})"


def _deals(
    conn: sa.Connection, stage_table: str, policy: OutboundPolicy, before: dict[str, bool]
) -> list[OutboxRow]:
    """Deals that became won start a chain (trigger ``hubspot_deal_won``); with ``rewin: new_order`` a
    chain's deal won again after being reopened starts the next generation; a won deal whose amount differs
    from its order's is a ``deal.changed``.

    A deal new to the warehouse and already won (the first sync of a portal with history) starts a chain
    only when no order references it yet and it was won within ``first_seen_won_within``: history is not
    ordered a second time. A deal stored as won before this merge starts nothing (it was handled then)."""
    starts = policy.trigger == "hubspot_deal_won"
    rewin = policy.rewin == "new_order"
    q = conn.dialect.identifier_preparer.quote(stage_table)
    out: list[OutboxRow] = []
    # Became won in this merge: staged as won, stored as won now (a staged row older than the stored one
    # changes nothing), and not stored as won before.
    sql = f"""
        SELECT d.source_id, c.generation, COALESCE(d.close_date, d.source_updated_at) AS won_at
        FROM deals d
        JOIN {_staged(conn, stage_table, "WHERE is_closed_won = :won")} s
          ON s.source_system = d.source_system AND s.source_id = d.source_id
        LEFT JOIN outbound_chains c ON c.chain_id = d.source_id
        WHERE d.source_system = 'hubspot' AND d.archived_at IS NULL AND d.is_closed_won = :won
          -- written by this merge (an unchanged row keeps the load id that wrote it: nothing happened to it)
          AND d.load_id IN (SELECT DISTINCT load_id FROM {q})"""
    since = _now() - policy.first_seen_won_within
    first_seen: list[str] = []
    for deal_id, generation, won_at in conn.execute(sa.text(sql), {"won": True}).all():
        deal_id = str(deal_id)
        if before.get(deal_id):
            continue  # already won before this merge
        if generation is None:
            if not starts:
                continue
            if deal_id not in before:  # new to the warehouse and already won: recently, or history?
                if isinstance(won_at, str):
                    won_at = datetime.fromisoformat(won_at)
                if won_at is not None and won_at.tzinfo is None:
                    won_at = won_at.replace(tzinfo=UTC)
                if won_at is not None and won_at >= since:
                    first_seen.append(deal_id)
                continue
            out.append(
                OutboxRow(
                    won_key(deal_id), "deal.won", "odoo_order", deal_id, {"deal_id": deal_id, "generation": 1}
                )
            )
        elif rewin and deal_id in before:  # stored not won before, won now: won again
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
    ordered = _ordered_deals(conn, first_seen)
    for deal_id in first_seen:
        if deal_id not in ordered:
            out.append(
                OutboxRow(
                    won_key(deal_id), "deal.won", "odoo_order", deal_id, {"deal_id": deal_id, "generation": 1}
                )
            )
    # Amount changed after the order: every staged deal with an ordered chain (a partial row may keep the
    # stage and carry only the amount).
    sql = f"""
        SELECT d.source_id, d.amount, c.generation, c.amount_at_order
        FROM deals d
        JOIN {_staged(conn, stage_table)} s ON s.source_system = d.source_system AND s.source_id = d.source_id
        JOIN outbound_chains c ON c.chain_id = d.source_id
        WHERE d.source_system = 'hubspot' AND d.is_closed_won = :won
          AND c.order_id IS NOT NULL AND c.amount_at_order IS NOT NULL AND d.amount IS NOT NULL"""
    for deal_id, amount, generation, amount_at_order in conn.execute(sa.text(sql), {"won": True}).all():
        if Decimal(str(amount)) != Decimal(str(amount_at_order)):
            text = money_text(amount)
            out.append(
                OutboxRow(
                    f"deal.changed:{deal_id}:{text}",
                    "deal.changed",
                    "odoo_order",
                    str(deal_id),
                    {"deal_id": str(deal_id), "generation": int(generation), "amount": text},
                )
            )
    return out


def _ordered_deals(conn: sa.Connection, deal_ids: list[str]) -> set[str]:
    """Which of ``deal_ids`` an Odoo order already references (``client_order_ref`` = the deal id or
    ``hubspot-deal:<id>``): one statement, the refs passed as one JSON array."""
    if not deal_ids:
        return set()
    refs = json.dumps([*deal_ids, *(f"hubspot-deal:{d}" for d in deal_ids)])
    if conn.dialect.name == "postgresql":
        wanted = "SELECT json_array_elements_text(CAST(:refs AS json))"
    else:
        wanted = "SELECT value FROM json_each(:refs)"
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT client_order_ref FROM sales_orders WHERE source_system = 'odoo' "
            f"AND client_order_ref IN ({wanted})"
        ),
        {"refs": refs},
    )
    return {str(r).removeprefix("hubspot-deal:") for (r,) in rows}


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
    """A tracker event for a chain's tracking code: the shipment status goes to HubSpot. One message per
    version of the tracker (its row is keyed by the tracker id and updated by each event)."""
    sql = f"""
        SELECT c.chain_id, c.generation, e.source_system, e.source_id, e.tracking_code, e.status,
               e.source_updated_at, e.event_id
        FROM shipment_events e
        JOIN {_staged(conn, stage_table)} s ON s.source_system = e.source_system AND s.source_id = e.source_id
        JOIN outbound_chains c ON c.tracking_code = e.tracking_code
        WHERE e.tracking_code IS NOT NULL"""
    out = []
    for chain, gen, system, tracker, code, status, at, event_id in conn.execute(sa.text(sql)).all():
        if isinstance(at, str):  # SQLite: text as SQLAlchemy stores it (UTC)
            at = datetime.fromisoformat(at)
        if isinstance(at, datetime) and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        at_text = at.isoformat() if isinstance(at, datetime) else str(at)
        version = str(event_id or at_text)
        key = f"tracking.updated:{chain}:{system}:{tracker}:{version}"
        if len(key) > 255:
            key = f"tracking.updated:{chain}:{hashlib.sha256(key.encode()).hexdigest()}"
        out.append(
            OutboxRow(
                key,
                "tracking.updated",
                "hubspot_tracking",
                chain,
                {
                    "deal_id": chain,
                    "generation": int(gen),
                    "tracking_code": code,
                    "status": status,
                    "tracker_id": f"{system}:{tracker}",
                    "event_id": f"{system}:{tracker}:{version}",
                    "status_at": at_text,
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
