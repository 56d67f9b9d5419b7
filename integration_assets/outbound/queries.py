"""The read side of the outbound chain (docs/ARCHITECTURE.md, "The outbound flow"): what waits, what is
stuck, whether every won deal has exactly one order and every shippable order exactly one label, and one
chain traced across the systems. Plain Python over the warehouse: the CLI (``outbound status|trace``), the
Dagster checks (``checks/outbound.py``) and the sensor call these; nothing here writes.

Every figure holds ids, states, times and counts only: deal names, addresses and e-mails stay out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from integration_assets.outbound.runner import STEP_ORDER, open_step_queue
from integration_assets.policies import OutboundPolicy, load_policies
from integration_assets.quality.outcome import aware, utcnow
from integration_assets.queue import Queue, QueueError
from integration_assets.warehouse.schema import (
    dead_letters,
    deals,
    outbound_chains,
    outbound_ledger,
    outbox,
    payments,
    sales_orders,
    shipment_events,
)

STEPS: tuple[str, ...] = STEP_ORDER  # the steps in the chain's order
# Ledger statuses that mean the target holds the object: written now, or found by key on a retry.
DONE = ("done", "found")
# Chain statuses after which no label is expected (the order was cancelled, or its label refunded).
CANCELLED = ("cancelled", "refunded")
ORDER_REF_PREFIX = "hubspot-deal:"
SUCCEEDED_PAYMENT = "succeeded"
CANCELLED_ORDER_STATE = "cancel"
CONFIRMED_ORDER_STATES = ("sale", "done")


def order_ref(deal_id: str, generation: int = 1) -> str:
    """The sale.order ``client_order_ref`` of a deal's chain (the key the order step looks up in Odoo)."""
    return f"{ORDER_REF_PREFIX}{deal_id}" if generation <= 1 else f"{ORDER_REF_PREFIX}{deal_id}:{generation}"


def _age_s(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max(0.0, (now - aware(then)).total_seconds())


# -- backlog ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepBacklog:
    """What waits for one step: outbox rows not yet relayed to its queue, and messages on its queue."""

    step: str
    outbox_unsent: int
    outbox_oldest_age_s: float | None
    queue_depth: int | None  # None: the queue could not be read (``queue_error`` says why)
    queue_oldest_age_s: float | None
    queue_error: str | None = None

    @property
    def pending(self) -> int:
        return self.outbox_unsent + (self.queue_depth or 0)

    @property
    def oldest_age_s(self) -> float | None:
        ages = [a for a in (self.outbox_oldest_age_s, self.queue_oldest_age_s) if a is not None]
        return max(ages) if ages else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pending": self.pending, "oldest_age_s": self.oldest_age_s}


QueueOpener = Callable[..., Queue]  # (step, queue_url, *, engine) -> the step's queue


def unsent_outbox(engine: sa.Engine, *, now: datetime | None = None) -> dict[str, tuple[int, float | None]]:
    """Per step: outbox rows the relay has not published yet, and the age of the oldest (one query)."""
    now = now or utcnow()
    o = outbox.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.step, sa.func.count(), sa.func.min(o.created_at))
            .where(o.sent_at.is_(None))
            .group_by(o.step)
        ).all()
    return {step: (int(n), _age_s(now, oldest)) for step, n, oldest in rows}


def outbox_state(engine: sa.Engine) -> tuple[int, int]:
    """(unsent rows, newest unsent id): what the sensor's tick reads, one query on the (sent_at, id) index."""
    c = outbox.c
    with engine.connect() as conn:
        n, newest = conn.execute(
            sa.select(sa.func.count(), sa.func.max(c.id)).where(c.sent_at.is_(None))
        ).one()
    return int(n), int(newest or 0)


def queue_backlog(
    engine: sa.Engine, step: str, *, queue_url: str | None = None, opener: QueueOpener = open_step_queue
) -> tuple[int | None, float | None, str | None]:
    """(depth, oldest age in s, error) of one step's queue; an unreachable queue is reported, not raised."""
    try:
        with opener(step, queue_url, engine=engine) as queue:
            depth = queue.depth()
            oldest = queue.oldest_age_seconds() if depth else None
    except QueueError as exc:
        return None, None, f"{type(exc).__name__}: {exc}"[:300]
    return depth, oldest, None


def backlog(
    engine: sa.Engine,
    *,
    queue_url: str | None = None,
    now: datetime | None = None,
    steps: Sequence[str] = STEPS,
    opener: QueueOpener = open_step_queue,
) -> list[StepBacklog]:
    """Per step: unsent outbox rows + queue depth + the oldest waiting message's age."""
    now = now or utcnow()
    unsent = unsent_outbox(engine, now=now)
    out = []
    for step in steps:
        n, outbox_age = unsent.get(step, (0, None))
        depth, queue_age, error = queue_backlog(engine, step, queue_url=queue_url, opener=opener)
        out.append(StepBacklog(step, n, outbox_age, depth, queue_age, error))
    return out


# -- stuck chains -------------------------------------------------------------------------------------------

StuckReason = Literal["no_order", "no_label"]


@dataclass(frozen=True)
class StuckChain:
    """A chain waiting longer than policy allows: won without an order, or ordered (and paid) without a label."""

    chain_id: str
    deal_id: str
    reason: StuckReason
    status: str
    since: datetime  # when the wait began: won_at, or the order (or its payment) for a label
    age_s: float
    order_id: str | None = None
    dead_letters: int = 0  # pending outbound dead letters of this chain (held, not merely slow)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "since": self.since.isoformat()}


def _paid_at(conn: sa.Connection, order_ids: Iterable[str]) -> dict[str, datetime]:
    """Order id -> the first succeeded Stripe payment for it (payments.order_id = the Odoo order id)."""
    ids = sorted({i for i in order_ids if i})
    if not ids:
        return {}
    p = payments.c
    rows = conn.execute(
        sa.select(p.order_id, sa.func.min(sa.func.coalesce(p.created_at, p.source_updated_at)))
        .where(p.order_id.in_(ids), p.status == SUCCEEDED_PAYMENT)
        .group_by(p.order_id)
    ).all()
    return {str(i): aware(at) for i, at in rows if at is not None}


def _ordered_at(conn: sa.Connection, chain_ids: Iterable[str]) -> dict[str, datetime]:
    """Chain id -> when its order step finished (the ledger's done_at of the chain's order write)."""
    ids = sorted(set(chain_ids))
    if not ids:
        return {}
    lg = outbound_ledger.c
    rows = conn.execute(
        sa.select(lg.chain_id, sa.func.min(sa.func.coalesce(lg.done_at, lg.last_attempt_at)))
        .where(lg.chain_id.in_(ids), lg.step == "odoo_order", lg.status.in_(DONE))
        .group_by(lg.chain_id)
    ).all()
    return {str(c): aware(at) for c, at in rows if at is not None}


def _pending_dead_letters(conn: sa.Connection, chain_ids: Iterable[str]) -> dict[str, int]:
    ids = sorted(set(chain_ids))
    if not ids:
        return {}
    d = dead_letters.c
    rows = conn.execute(
        sa.select(d.natural_key, sa.func.count())
        .where(d.stage == "outbound", d.status == "pending", d.natural_key.in_(ids))
        .group_by(d.natural_key)
    ).all()
    return {str(k): int(n) for k, n in rows}


def stuck_chains(engine: sa.Engine, policy: OutboundPolicy, now: datetime | None = None) -> list[StuckChain]:
    """Chains won more than ``policy.stuck.order_after`` ago without an order, and chains whose order was
    confirmed (and, with ``require_payment``, paid) more than ``policy.stuck.label_after`` ago without a
    label. Cancelled and refunded chains wait for nothing."""
    now = now or utcnow()
    c = outbound_chains.c
    out: list[StuckChain] = []
    with engine.connect() as conn:
        no_order = conn.execute(
            sa.select(c.chain_id, c.deal_id, c.status, c.won_at, c.updated_at)
            .where(c.order_id.is_(None), c.status.not_in(CANCELLED))
            .order_by(c.chain_id)
        ).all()
        no_label = conn.execute(
            sa.select(c.chain_id, c.deal_id, c.status, c.order_id, c.won_at, c.updated_at)
            .where(c.order_id.is_not(None), c.shipment_id.is_(None), c.status.not_in(CANCELLED))
            .order_by(c.chain_id)
        ).all()
        ordered_at = _ordered_at(conn, (r.chain_id for r in no_label))
        paid_at = _paid_at(conn, (r.order_id for r in no_label)) if policy.require_payment else {}
        held = _pending_dead_letters(conn, [r.chain_id for r in no_order] + [r.chain_id for r in no_label])
    for r in no_order:
        since = aware(r.won_at or r.updated_at)
        if now - since > policy.stuck.order_after:
            out.append(
                StuckChain(
                    r.chain_id,
                    r.deal_id,
                    "no_order",
                    r.status,
                    since,
                    _age_s(now, since) or 0.0,
                    dead_letters=held.get(r.chain_id, 0),
                )
            )
    for lr in no_label:
        start = ordered_at.get(lr.chain_id) or aware(lr.won_at or lr.updated_at)
        if policy.require_payment:
            paid = paid_at.get(str(lr.order_id))
            if paid is None:
                continue  # waiting for the payment is the policy, not a stuck chain
            start = max(start, paid)
        if now - start > policy.stuck.label_after:
            out.append(
                StuckChain(
                    lr.chain_id,
                    lr.deal_id,
                    "no_label",
                    lr.status,
                    start,
                    _age_s(now, start) or 0.0,
                    order_id=str(lr.order_id),
                    dead_letters=held.get(lr.chain_id, 0),
                )
            )
    return out


# -- reconciliation -----------------------------------------------------------------------------------------

MismatchKind = Literal[
    "deal_without_order", "deal_with_duplicate_orders", "order_without_label", "order_with_duplicate_labels"
]


@dataclass(frozen=True)
class OutboundMismatch:
    """One broken invariant, with the ids to act on (``outbound trace <deal_id>``)."""

    kind: MismatchKind
    deal_id: str
    order_ids: tuple[str, ...] = ()
    shipment_ids: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "deal_id": self.deal_id,
            "order_ids": list(self.order_ids),
            "shipment_ids": list(self.shipment_ids),
            **dict(self.detail),
        }


@dataclass(frozen=True)
class Reconciliation:
    """Won deals vs Odoo orders (exactly one each), shippable orders vs purchased labels (exactly one each)."""

    won_deals: int  # in scope: with a chain, or won long enough ago that a chain must exist
    deals_with_one_order: int
    shippable_orders: int
    orders_with_one_label: int
    in_flight: int  # in scope but still within the grace period: not counted either way
    mismatches: list[OutboundMismatch]
    warehouse_orders_pulled: bool  # whether sales_orders held any outbound order (a second source of truth)

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def counts(self) -> dict[str, int]:
        by_kind: dict[str, int] = {}
        for m in self.mismatches:
            by_kind[m.kind] = by_kind.get(m.kind, 0) + 1
        return by_kind

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "won_deals": self.won_deals,
            "deals_with_one_order": self.deals_with_one_order,
            "shippable_orders": self.shippable_orders,
            "orders_with_one_label": self.orders_with_one_label,
            "in_flight": self.in_flight,
            "warehouse_orders_pulled": self.warehouse_orders_pulled,
            "mismatches_by_kind": self.counts(),
            "mismatches": [m.as_dict() for m in self.mismatches],
        }


def _generation_of(ref: str, deal_id: str) -> int | None:
    """The chain generation a client_order_ref names (``hubspot-deal:<id>`` = 1, ``…:<n>`` = n)."""
    base = order_ref(deal_id)
    if ref == base:
        return 1
    tail = ref.removeprefix(base + ":")
    return int(tail) if tail != ref and tail.isdigit() else None


def _ledger_generation(key: str, step: str, chain_id: str) -> int | None:
    """``<step>:<chain>`` = generation 1, ``<step>:<chain>:<n>`` = n; a sub-write key (``…:partner``) is None."""
    base = f"{step}:{chain_id}"
    if key == base:
        return 1
    tail = key.removeprefix(base + ":")
    return int(tail) if tail != key and tail.isdigit() else None


def reconcile(
    engine: sa.Engine, policy: OutboundPolicy | None = None, *, now: datetime | None = None
) -> Reconciliation:
    """Every won deal has exactly one Odoo order, every shippable order exactly one purchased label.

    A deal's orders are those the outbound ledger and the chain recorded, plus the warehouse's
    ``sales_orders`` whose ``client_order_ref`` is the chain's reference, when Odoo orders have been pulled
    (a second order made by a lost response shows there, not in the ledger). Cancelled orders do not count
    as duplicates. Scope: won deals with a chain, and won deals without one that changed after the first
    chain began and longer than ``stuck.order_after`` ago (the capture should have made one). A shippable
    order is confirmed, not cancelled and, with ``require_payment``, paid; it needs its label within
    ``stuck.label_after``.
    """
    policy = policy or load_policies().outbound
    now = now or utcnow()
    c, d, lg, so = outbound_chains.c, deals.c, outbound_ledger.c, sales_orders.c
    mismatches: list[OutboundMismatch] = []
    with engine.connect() as conn:
        chains = {r.chain_id: r for r in conn.execute(sa.select(outbound_chains)).all()}
        first_won = min((aware(r.won_at) for r in chains.values() if r.won_at is not None), default=None)
        chainless: Sequence[Any] = []
        if first_won is not None and policy.enabled and policy.trigger == "hubspot_deal_won":
            chainless = conn.execute(
                sa.select(d.source_id, d.source_updated_at)
                .where(
                    d.is_closed_won.is_(True),
                    d.archived_at.is_(None),
                    d.source_updated_at >= first_won,
                    d.source_updated_at < now - policy.stuck.order_after,
                    d.source_id.not_in(sa.select(c.deal_id)),
                )
                .order_by(d.source_id)
            ).all()
        ledger_rows = conn.execute(
            sa.select(
                lg.key, lg.step, lg.chain_id, lg.status, lg.target_id, lg.done_at, lg.last_attempt_at
            ).where(lg.step.in_(("odoo_order", "easypost_label")), lg.status.in_(DONE))
        ).all()
        wh_orders = conn.execute(
            sa.select(so.source_id, so.client_order_ref, so.state).where(
                so.client_order_ref.like(ORDER_REF_PREFIX + "%")
            )
        ).all()
        paid_at = (
            _paid_at(conn, [str(r.order_id) for r in chains.values() if r.order_id])
            if policy.require_payment
            else {}
        )

    # chain id -> order ids / shipment ids of its current generation, from the ledger
    ledger_orders: dict[str, set[str]] = {}
    ledger_labels: dict[str, set[str]] = {}
    ordered_at: dict[str, datetime] = {}
    for r in ledger_rows:
        chain = chains.get(r.chain_id)
        gen = _ledger_generation(r.key, r.step, r.chain_id)
        if chain is None or gen != (chain.generation or 1) or not r.target_id:
            continue
        if r.step == "odoo_order":
            ledger_orders.setdefault(r.chain_id, set()).add(str(r.target_id))
            at = r.done_at or r.last_attempt_at
            if at is not None:
                ordered_at[r.chain_id] = aware(at)
        else:
            ledger_labels.setdefault(r.chain_id, set()).add(str(r.target_id))
    # deal id -> {order id: state} from the warehouse (Odoo pulled), per generation
    wh_by_ref: dict[str, dict[str, str | None]] = {}
    for o in wh_orders:
        wh_by_ref.setdefault(o.client_order_ref, {})[str(o.source_id)] = o.state

    won = deals_one = shippable = labels_one = in_flight = 0
    for chain_id, ch in sorted(chains.items()):
        gen = ch.generation or 1
        deal_id = str(ch.deal_id)
        won += 1
        states: dict[str, str | None] = dict(wh_by_ref.get(order_ref(deal_id, gen), {}))
        for oid in ledger_orders.get(chain_id, set()) | ({str(ch.order_id)} if ch.order_id else set()):
            states.setdefault(oid, None)  # known to the chain, not (yet) pulled into the warehouse
        live = sorted(o for o, s in states.items() if s != CANCELLED_ORDER_STATE)
        won_at = aware(ch.won_at or ch.updated_at)
        if not states:
            if now - won_at <= policy.stuck.order_after and ch.status not in ("dead_lettered", "review"):
                in_flight += 1
            else:
                mismatches.append(
                    OutboundMismatch(
                        "deal_without_order",
                        deal_id,
                        detail={"chain_status": ch.status, "won_at": won_at.isoformat(), "generation": gen},
                    )
                )
            continue
        if len(live) > 1:
            mismatches.append(
                OutboundMismatch(
                    "deal_with_duplicate_orders",
                    deal_id,
                    tuple(live),
                    detail={"chain_status": ch.status, "chain_order_id": ch.order_id, "generation": gen},
                )
            )
        else:
            deals_one += 1
        # labels: for the chain's order when it is shippable
        if ch.status in CANCELLED or not live:
            continue
        order_id = str(ch.order_id) if ch.order_id and str(ch.order_id) in live else live[0]
        state = states.get(order_id)
        if state is not None and state not in CONFIRMED_ORDER_STATES:
            continue  # pulled and not confirmed (draft, sent): not shippable yet
        if state is None and ch.status in ("won", "dead_lettered") and not ch.shipment_id:
            continue  # the order step never confirmed it
        start = ordered_at.get(chain_id, won_at)
        if policy.require_payment:
            paid = paid_at.get(order_id)
            if paid is None:
                continue
            start = max(start, paid)
        shipments = ledger_labels.get(chain_id, set()) | ({str(ch.shipment_id)} if ch.shipment_id else set())
        if (
            not shipments
            and now - start <= policy.stuck.label_after
            and ch.status not in ("dead_lettered", "review")
        ):
            in_flight += 1  # the label step has until label_after
            continue
        shippable += 1
        if not shipments:
            mismatches.append(
                OutboundMismatch(
                    "order_without_label",
                    deal_id,
                    (order_id,),
                    detail={"chain_status": ch.status, "shippable_since": start.isoformat()},
                )
            )
        elif len(shipments) > 1:
            mismatches.append(
                OutboundMismatch(
                    "order_with_duplicate_labels",
                    deal_id,
                    (order_id,),
                    tuple(sorted(shipments)),
                    detail={"chain_status": ch.status},
                )
            )
        else:
            labels_one += 1
    for r in chainless:
        won += 1
        states = wh_by_ref.get(order_ref(str(r.source_id)), {})
        live = sorted(o for o, s in states.items() if s != CANCELLED_ORDER_STATE)
        if not states:
            mismatches.append(
                OutboundMismatch(
                    "deal_without_order",
                    str(r.source_id),
                    detail={"chain_status": None, "reason": "won deal has no outbound chain"},
                )
            )
        elif len(live) > 1:
            mismatches.append(OutboundMismatch("deal_with_duplicate_orders", str(r.source_id), tuple(live)))
        else:
            deals_one += 1
    return Reconciliation(
        won_deals=won,
        deals_with_one_order=deals_one,
        shippable_orders=shippable,
        orders_with_one_label=labels_one,
        in_flight=in_flight,
        mismatches=mismatches,
        warehouse_orders_pulled=bool(wh_orders),
    )


# -- trace --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceStep:
    """One outbound write of the chain (a ledger row): when, how often, with what outcome."""

    key: str
    step: str
    target_system: str
    status: str
    attempts: int
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    done_at: datetime | None
    latency_ms: int | None
    target_id: str | None
    target_ref: str | None
    contract_version: str | None
    detail: Any = None


@dataclass(frozen=True)
class ChainTrace:
    """One deal's chain across systems: deal → order → picking → shipment → tracking events."""

    deal_id: str
    deal: dict[str, Any] | None
    chain: dict[str, Any] | None
    steps: list[TraceStep]
    outbox: list[dict[str, Any]]
    orders: list[dict[str, Any]]  # the warehouse's sales_orders rows for the chain's reference(s)
    picking_ids: list[int]
    shipment: dict[str, Any] | None
    tracking_events: list[dict[str, Any]]
    payments: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]

    @property
    def found(self) -> bool:
        return bool(self.deal or self.chain or self.steps or self.outbox)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=_jsonable))


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else str(v)


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _row(r: Any, *, times: Iterable[str] = ()) -> dict[str, Any]:
    out = dict(r._mapping)
    for k in times:
        if isinstance(out.get(k), datetime):
            out[k] = aware(out[k])
    return out


def trace(engine: sa.Engine, deal_id: str) -> ChainTrace:
    """The whole chain of one deal: the deal, the chain row, every ledger step (time, attempts, outcome),
    the outbox messages, the Odoo order(s) and pickings, the EasyPost shipment, its tracking events, the
    order's payments and the chain's outbound dead letters."""
    deal_id = str(deal_id).strip()
    c, d, lg, ob, so, se, p, dl = (
        outbound_chains.c,
        deals.c,
        outbound_ledger.c,
        outbox.c,
        sales_orders.c,
        shipment_events.c,
        payments.c,
        dead_letters.c,
    )
    with engine.connect() as conn:
        deal = conn.execute(
            sa.select(
                d.source_id.label("deal_id"),
                d.stage,
                d.pipeline,
                d.amount,
                d.close_date,
                d.company_id,
                d.is_closed_won,
                d.source_updated_at,
            ).where(d.source_system == "hubspot", d.source_id == deal_id)
        ).first()
        chain = conn.execute(sa.select(outbound_chains).where(c.deal_id == deal_id)).first()
        chain_id = chain.chain_id if chain else deal_id
        steps = conn.execute(
            sa.select(outbound_ledger)
            .where(lg.chain_id == chain_id)
            .order_by(sa.func.coalesce(lg.first_attempt_at, lg.last_attempt_at), lg.key)
        ).all()
        messages = conn.execute(
            sa.select(ob.id, ob.key, ob.topic, ob.step, ob.created_at, ob.sent_at, ob.attempts)
            .where(ob.chain_id == chain_id)
            .order_by(ob.id)
        ).all()
        refs = [order_ref(deal_id, g) for g in range(1, (chain.generation if chain else 1) + 1)]
        order_ids = {str(chain.order_id)} if chain and chain.order_id else set()
        order_ids |= {str(s.target_id) for s in steps if s.step == "odoo_order" and s.target_id}
        orders = conn.execute(
            sa.select(
                so.source_id.label("order_id"),
                so.name,
                so.state,
                so.client_order_ref,
                so.amount_total,
                so.currency,
                so.source_updated_at,
            )
            .where(sa.or_(so.client_order_ref.in_(refs), so.source_id.in_(sorted(order_ids))))
            .order_by(so.source_id)
        ).all()
        tracking = chain.tracking_code if chain else None
        events = (
            conn.execute(
                sa.select(
                    se.source_id.label("tracker_id"),
                    se.tracking_code,
                    se.carrier,
                    se.status,
                    se.status_detail,
                    se.previous_status,
                    se.est_delivery_date,
                    se.shipment_id,
                    se.source_updated_at,
                    se.event_type,
                )
                .where(se.tracking_code == tracking)
                .order_by(se.source_updated_at)
            ).all()
            if tracking
            else []
        )
        pays = (
            conn.execute(
                sa.select(
                    p.source_id.label("payment_id"),
                    p.object_type,
                    p.status,
                    p.amount,
                    p.currency,
                    p.order_id,
                    p.source_updated_at,
                )
                .where(p.order_id.in_(sorted(order_ids | {str(o.order_id) for o in orders})))
                .order_by(p.source_updated_at)
            ).all()
            if order_ids or orders
            else []
        )
        held = conn.execute(
            sa.select(
                dl.id,
                dl.entity.label("step"),
                dl.source_system.label("target"),
                dl.check_name,
                dl.reason,
                dl.column_name,
                dl.status,
                dl.attempts,
                dl.contract_version,
                dl.first_seen,
                dl.last_seen,
            )
            .where(dl.stage == "outbound", dl.natural_key == chain_id)
            .order_by(dl.id)
        ).all()
    chain_d = _row(chain, times=("won_at", "shipment_status_at", "updated_at")) if chain else None
    picking_ids: list[int] = []
    if chain_d:
        picking_ids = [int(i) for i in (_loads(chain_d.pop("picking_ids")) or [])]
    shipment = (
        {
            "shipment_id": chain.shipment_id,
            "tracking_code": chain.tracking_code,
            "label_url": chain.label_url,
            "status": chain.shipment_status,
            "status_at": aware(chain.shipment_status_at),
        }
        if chain and (chain.shipment_id or chain.tracking_code)
        else None
    )
    return ChainTrace(
        deal_id=deal_id,
        deal=_row(deal, times=("close_date", "source_updated_at")) if deal else None,
        chain=chain_d,
        steps=[
            TraceStep(
                key=s.key,
                step=s.step,
                target_system=s.target_system,
                status=s.status,
                attempts=int(s.attempts or 0),
                first_attempt_at=aware(s.first_attempt_at),
                last_attempt_at=aware(s.last_attempt_at),
                done_at=aware(s.done_at),
                latency_ms=s.latency_ms,
                target_id=s.target_id,
                target_ref=s.target_ref,
                contract_version=s.contract_version,
                detail=_loads(s.outcome_detail),
            )
            for s in steps
        ],
        outbox=[_row(m, times=("created_at", "sent_at")) for m in messages],
        orders=[_row(o, times=("source_updated_at",)) for o in orders],
        picking_ids=picking_ids,
        shipment=shipment,
        tracking_events=[_row(e, times=("est_delivery_date", "source_updated_at")) for e in events],
        payments=[_row(x, times=("source_updated_at",)) for x in pays],
        dead_letters=[_row(h, times=("first_seen", "last_seen")) for h in held],
    )
