"""What the outbound checks decide (docs/ARCHITECTURE.md: ``quality/`` and ``outbound/`` decide, ``checks/``
wraps): the backlog against ``outbound.backlog``, stuck chains against ``outbound.stuck``, and the
reconciliation, each as a ``CheckOutcome`` with ids and counts in its metadata. Severities and runbooks come
from policies.yaml ``checks:``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from integration_assets.outbound.queries import (
    OutboundMismatch,
    Reconciliation,
    StepBacklog,
    StuckChain,
    backlog,
    reconcile,
    stuck_chains,
)
from integration_assets.policies import CheckName, CheckSeverity, Policies, format_duration, human_age
from integration_assets.quality.mismatches import LISTED, Mismatch, replace_mismatches
from integration_assets.quality.outcome import CheckOutcome, utcnow

BACKLOG: CheckName = "outbound_backlog"
STUCK: CheckName = "outbound_stuck_chains"
RECONCILIATION: CheckName = "outbound_reconciliation"
_SIDE = {
    "deal_without_order": "odoo",
    "deal_with_duplicate_orders": "odoo",
    "order_without_label": "easypost",
    "order_with_duplicate_labels": "easypost",
}


def backlog_outcome(rows: Sequence[StepBacklog], policies: Policies) -> CheckOutcome:
    """Pending (outbox unsent + queue depth) and the oldest waiting message, per step and in total: WARN
    beyond ``pending_warn``/``oldest_warn``, ERROR beyond ``*_error``; an unreadable step queue is an ERROR
    (nothing of that step can move)."""
    pol = policies.outbound.backlog
    pending = sum(r.pending for r in rows)
    oldest = max((r.oldest_age_s for r in rows if r.oldest_age_s is not None), default=None)
    unreadable = {r.step: r.queue_error for r in rows if r.queue_error}
    metadata = {
        "pending": pending,
        "outbox_unsent": sum(r.outbox_unsent for r in rows),
        "queue_depth": sum(r.queue_depth or 0 for r in rows),
        "oldest_age_s": round(oldest, 1) if oldest is not None else -1.0,
        "per_step": {
            r.step: {
                "outbox_unsent": r.outbox_unsent,
                "queue_depth": r.queue_depth,
                "oldest_age_s": round(r.oldest_age_s, 1) if r.oldest_age_s is not None else None,
            }
            for r in rows
        },
        "pending_warn": pol.pending_warn,
        "pending_error": pol.pending_error,
        "oldest_warn": format_duration(pol.oldest_warn),
        "oldest_error": format_duration(pol.oldest_error),
    }
    age = timedelta(seconds=oldest or 0)
    findings: list[tuple[CheckSeverity, str]] = []
    if unreadable:
        metadata["unreadable_queues"] = unreadable
        findings.append(("ERROR", f"step queue(s) unreadable: {', '.join(sorted(unreadable))}"))
    tiers: tuple[CheckSeverity, CheckSeverity] = ("ERROR", "WARN")
    for threshold, tier in zip((pol.pending_error, pol.pending_warn), tiers, strict=True):
        if pending > threshold:
            findings.append((tier, f"{pending} message(s) pending (> {threshold})"))
            break
    for limit, tier in zip((pol.oldest_error, pol.oldest_warn), tiers, strict=True):
        if oldest is not None and age > limit:
            findings.append((tier, f"oldest waiting for {human_age(age)} (> {format_duration(limit)})"))
            break
    if not findings:
        return CheckOutcome.ok(
            f"{pending} outbound message(s) pending"
            + (f", oldest {human_age(age)}" if oldest is not None else "")
            + " (within outbound.backlog).",
            **metadata,
        )
    severity: CheckSeverity = "ERROR" if any(s == "ERROR" for s, _ in findings) else "WARN"
    busiest = sorted(rows, key=lambda r: -r.pending)[:3]
    where = ", ".join(f"{r.step} {r.pending}" for r in busiest if r.pending)
    return CheckOutcome.fail(
        severity,
        "Outbound backlog: "
        + "; ".join(t for _, t in findings)
        + (f". Per step: {where}." if where else "."),
        **metadata,
    )


def stuck_outcome(chains: Sequence[StuckChain], policies: Policies) -> CheckOutcome:
    """Any chain waiting past ``outbound.stuck`` fails with the policy's severity, listing the deal ids."""
    pol = policies.outbound.stuck
    no_order = [c for c in chains if c.reason == "no_order"]
    no_label = [c for c in chains if c.reason == "no_label"]
    metadata = {
        "stuck": len(chains),
        "without_order": len(no_order),
        "without_label": len(no_label),
        "held_in_dead_letters": sum(1 for c in chains if c.dead_letters),
        "order_after": format_duration(pol.order_after),
        "label_after": format_duration(pol.label_after),
        "listed": [
            {
                "deal_id": c.deal_id,
                "reason": c.reason,
                "status": c.status,
                "waiting": human_age(timedelta(seconds=c.age_s)),
                "order_id": c.order_id,
                "dead_letters": c.dead_letters,
            }
            for c in chains[:LISTED]
        ],
    }
    if not chains:
        return CheckOutcome.ok("No outbound chain waits longer than outbound.stuck allows.", **metadata)
    parts = []
    if no_order:
        parts.append(f"{len(no_order)} won deal(s) without an order after {format_duration(pol.order_after)}")
    if no_label:
        parts.append(f"{len(no_label)} order(s) without a label after {format_duration(pol.label_after)}")
    ids = ", ".join(c.deal_id for c in chains[:10]) + (" …" if len(chains) > 10 else "")
    return CheckOutcome.fail(
        policies.check(STUCK).severity,
        f"Stuck outbound chains: {'; '.join(parts)} (deals {ids}).",
        **metadata,
    )


def reconciliation_outcome(rec: Reconciliation, policies: Policies) -> CheckOutcome:
    """Fails with the policy's severity on any mismatch (missing or duplicate order or label)."""
    metadata = {
        "won_deals": rec.won_deals,
        "deals_with_one_order": rec.deals_with_one_order,
        "shippable_orders": rec.shippable_orders,
        "orders_with_one_label": rec.orders_with_one_label,
        "in_flight": rec.in_flight,
        "warehouse_orders_pulled": rec.warehouse_orders_pulled,
        "mismatches": len(rec.mismatches),
        "by_kind": rec.counts(),
        "listed": [m.as_dict() for m in rec.mismatches[:LISTED]],
        "table": f"reconciliation_mismatches WHERE check_name = '{RECONCILIATION}'",
    }
    if rec.passed:
        return CheckOutcome.ok(
            f"All {rec.won_deals} won deal(s) in scope have exactly one Odoo order and all "
            f"{rec.shippable_orders} shippable order(s) exactly one purchased label"
            + (f" ({rec.in_flight} still in flight)." if rec.in_flight else "."),
            **metadata,
        )
    text = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(rec.counts().items()))
    ids = ", ".join(m.deal_id for m in rec.mismatches[:10]) + (" …" if len(rec.mismatches) > 10 else "")
    return CheckOutcome.fail(
        policies.check(RECONCILIATION).severity,
        f"Outbound reconciliation: {text} (deals {ids}).",
        **metadata,
    )


def _mismatch(m: OutboundMismatch) -> Mismatch:
    return Mismatch(m.deal_id, _SIDE[m.kind], m.as_dict())


def check_backlog(engine: sa.Engine, policies: Policies, *, queue_url: str | None = None) -> CheckOutcome:
    return backlog_outcome(backlog(engine, queue_url=queue_url), policies)


def check_stuck(engine: sa.Engine, policies: Policies, *, now: datetime | None = None) -> CheckOutcome:
    return stuck_outcome(stuck_chains(engine, policies.outbound, now or utcnow()), policies)


def check_reconciliation(
    engine: sa.Engine, policies: Policies, *, run_id: str | None = None, now: datetime | None = None
) -> CheckOutcome:
    """Reconcile, and keep the mismatches in ``reconciliation_mismatches`` (as the other reconciliations)."""
    now = now or utcnow()
    rec = reconcile(engine, policies.outbound, now=now)
    with engine.begin() as conn:
        replace_mismatches(
            conn, RECONCILIATION, [_mismatch(m) for m in rec.mismatches], run_id=run_id, now=now
        )
    return reconciliation_outcome(rec, policies)
