"""``integration-assets outbound …``: the outbound chain (deal won → Odoo order → EasyPost label → write-back)
from the terminal: what waits and what is stuck, one pass of the steps (or a dry run that shows each payload
after its contract and sends nothing), and one chain traced across the systems."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from integration_assets.policies import human_age, load_policies
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import ensure_schema, get_engine

if TYPE_CHECKING:
    from integration_assets.outbound.queries import ChainTrace

STEP_WIDTH = 17  # the longest step name (hubspot_writeback): never cut in a table
EX_TEMPFAIL = 75  # sysexits.h: try again later (the warehouse, the queue or a target was unavailable)
# The steps, in chain order (the runner's STEP_ORDER; repeated so that --help imports no runner).
STEP_NAMES = (
    "odoo_order",
    "easypost_label",
    "odoo_tracking",
    "hubspot_writeback",
    "hubspot_tracking",
    "compensate",
)


def _engine() -> sa.Engine:
    settings = get_settings()
    ensure_schema(settings.warehouse_url)
    return get_engine(settings.warehouse_url)


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else human_age(timedelta(seconds=seconds))


def _when(at: datetime | None) -> str:
    return at.strftime("%m-%d %H:%M:%S") if at else "-"


def _ts(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(at, datetime) else str(at or "-")


def _json(data: Any) -> None:
    click.echo(json.dumps(data, default=str, sort_keys=True))


@click.group("outbound")
def outbound() -> None:
    """The outbound chain: deal won -> Odoo order -> EasyPost label -> write-back (status, run, trace)."""


@outbound.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_cmd(as_json: bool) -> None:
    """Backlog per step (outbox rows not relayed, queue depth, oldest), stuck chains, reconciliation summary."""
    # lazy: the runner imports the steps and their contracts (pandas), saves 1.6 s
    from integration_assets.outbound import queries

    engine = _engine()
    policy = load_policies().outbound
    rows = queries.backlog(engine)
    stuck = queries.stuck_chains(engine, policy)
    rec = queries.reconcile(engine, policy)
    if as_json:
        _json(
            {
                "backlog": [r.as_dict() for r in rows],
                "stuck": [s.as_dict() for s in stuck],
                "reconciliation": rec.as_dict(),
            }
        )
        return
    console = Console()
    t = Table(title="Outbound backlog per step", title_justify="left")
    for col in ("step", "outbox unsent", "queued", "pending", "oldest"):
        if col == "step":
            t.add_column(col, no_wrap=True, min_width=STEP_WIDTH)
        else:
            t.add_column(col, justify="right")
    for r in rows:
        queued = "[red]unreadable[/]" if r.queue_error else str(r.queue_depth)
        t.add_row(r.step, str(r.outbox_unsent), queued, str(r.pending), _age(r.oldest_age_s))
    console.print(t)
    for r in rows:
        if r.queue_error:
            console.print(f"[red]{r.step} queue[/]: {r.queue_error}")
    if stuck:
        s = Table(title=f"Stuck chains ({len(stuck)})", title_justify="left")
        for col in ("deal", "waiting for", "status", "since", "order", "dead letters"):
            s.add_column(col)
        for c in stuck:
            s.add_row(
                c.deal_id,
                "order" if c.reason == "no_order" else "label",
                c.status,
                human_age(timedelta(seconds=c.age_s)),
                c.order_id or "-",
                str(c.dead_letters),
            )
        console.print(s)
        console.print("  integration-assets outbound trace DEAL_ID shows where a chain stopped")
    else:
        console.print(
            f"stuck chains: none (order within {policy.stuck.order_after}, label within {policy.stuck.label_after})"
        )
    verdict = "[green]passes[/]" if rec.passed else "[red]FAILS[/]"
    console.print(
        f"reconciliation {verdict}: {rec.deals_with_one_order}/{rec.won_deals} won deal(s) with exactly one "
        f"order, {rec.orders_with_one_label}/{rec.shippable_orders} shippable order(s) with exactly one label, "
        f"{rec.in_flight} in flight"
        + ("" if rec.warehouse_orders_pulled else " (no Odoo orders pulled into the warehouse yet)")
    )
    if rec.mismatches:
        m = Table(title="Reconciliation mismatches", title_justify="left")
        for col in ("kind", "deal", "orders", "shipments"):
            m.add_column(col)
        for x in rec.mismatches:
            m.add_row(x.kind, x.deal_id, ", ".join(x.order_ids) or "-", ", ".join(x.shipment_ids) or "-")
        console.print(m)


@outbound.command("run")
@click.option("--step", type=click.Choice(STEP_NAMES), help="Only this step (default: every step, in order).")
@click.option(
    "--dry-run", is_flag=True, help="Show each payload that would be sent, after its contract; send nothing."
)
@click.option(
    "--max",
    "max_messages",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="At most this many messages per step.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def run_cmd(step: str | None, dry_run: bool, max_messages: int, as_json: bool) -> None:
    """Relay the outbox, then run each step once over its queue, in-process (what run_outbound's runs do).

    With --dry-run nothing is relayed, called, written or acked: each message on the step queues and each
    outbox row not relayed yet is planned and rendered through its contract and shown. Exit code 0 when the
    run went through (dead letters included), 75 when the warehouse or the queue was unavailable, 2 when a
    target's settings are missing (e.g. EASYPOST_API_KEY)."""
    # lazy: the runner imports the steps, their contracts and the API clients, saves 1.6 s
    from integration_assets.outbound.preview import preview_unsent
    from integration_assets.outbound.queries import outbox_state
    from integration_assets.outbound.relay import relay
    from integration_assets.outbound.runner import StepReport, run_step
    from integration_assets.outbound.targets import MissingTargetSettings
    from integration_assets.queue import QueueError

    engine = _engine()
    steps = [step] if step else list(STEP_NAMES)
    relayed = 0
    reports: list[StepReport] = []
    try:
        for name in steps:
            if not dry_run:
                relayed += relay(engine).published  # the previous step's follow-ups reach this step's queue
            report = run_step(engine, name, max_messages=max_messages, dry_run=dry_run)
            if dry_run:
                report.add(preview_unsent(engine, name))  # what the relay has not published yet
            reports.append(report)
        unsent, _newest = outbox_state(engine)
    except (QueueError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        click.echo(f"outbound run stopped: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    except MissingTargetSettings as exc:  # the messages it held come back after their visibility timeout
        click.echo(f"outbound run stopped: {exc}", err=True)
        sys.exit(2)
    if as_json:
        _json(
            {
                "dry_run": dry_run,
                "relayed": relayed,
                "outbox_unsent": unsent,
                "steps": [r.as_dict() for r in reports],
                "previews": [p for r in reports for p in r.previews],
                "errors": [e for r in reports for e in r.errors],
            }
        )
        return
    console = Console()
    if dry_run:
        previews = [p for r in reports for p in r.previews]
        for p in previews:
            console.print(
                f"[bold]{p['step']}[/] chain {p['chain_id']} ({p['key']}): would be {p['outcome']}"
                + (f", contract {p['contract_version']}" if p.get("contract_version") else "")
            )
            for payload in p.get("payloads") or []:
                console.print_json(json.dumps(payload, default=str, sort_keys=True))
        console.print(f"dry run: {len(previews)} message(s) previewed, nothing sent")
    t = Table(title="Outbound run" + (" (dry run)" if dry_run else ""), title_justify="left")
    cols = ("step", "in", "sent", "found", "skipped", "dlq", "retried", "p50 ms")  # dlq: dead-lettered
    for col in cols:
        if col == "step":
            t.add_column(col, no_wrap=True, min_width=STEP_WIDTH)
        else:
            t.add_column(col, justify="right")
    for r in reports:
        d = r.as_dict()
        t.add_row(
            r.step,
            str(r.received),
            str(r.sent + r.updated),
            str(r.found),
            str(r.skipped),
            str(r.dead_lettered + r.flagged),
            str(r.retried),
            "-" if d["latency_p50_ms"] is None else str(d["latency_p50_ms"]),
        )
    console.print(t)
    if not dry_run:
        console.print(f"relayed {relayed} outbox row(s); {unsent} left unsent")
    for e in [e for r in reports for e in r.errors][:20]:
        console.print(
            f"  chain {e.get('chain_id')}: {e.get('kind')} {e.get('check') or ''} {e.get('reason', '')}"
        )


def render_trace(t: ChainTrace) -> None:
    console = Console()
    deal, chain = t.deal, t.chain
    if deal:
        console.print(
            f"[bold]deal {t.deal_id}[/] (HubSpot): stage {deal['stage']}, won {bool(deal['is_closed_won'])}, "
            f"amount {deal['amount']}, company {deal['company_id'] or '-'}, updated {_ts(deal['source_updated_at'])}"
        )
    else:
        console.print(f"[bold]deal {t.deal_id}[/]: not in the warehouse")
    if chain:
        console.print(
            f"chain: status {chain['status']}, generation {chain['generation']}, won {_ts(chain['won_at'])}, "
            f"updated {_ts(chain['updated_at'])}"
        )
    else:
        console.print("chain: none (the deal never reached the outbox as won)")
    if t.outbox:
        ob = Table(title="Outbox messages", title_justify="left")
        ob.add_column("id", justify="right")
        ob.add_column("key", overflow="fold")
        ob.add_column("step", no_wrap=True, min_width=STEP_WIDTH)
        ob.add_column("created (UTC)", no_wrap=True)
        ob.add_column("relayed (UTC)", no_wrap=True)
        for m in t.outbox:
            ob.add_row(str(m["id"]), m["key"], m["step"] or "-", _when(m["created_at"]), _when(m["sent_at"]))
        console.print(ob)
    s = Table(title="Steps (outbound ledger)", title_justify="left")
    s.add_column("step", no_wrap=True, min_width=STEP_WIDTH)
    s.add_column("outcome", no_wrap=True)
    s.add_column("attempts", justify="right")
    s.add_column("done (UTC)", no_wrap=True, min_width=14)
    s.add_column("latency ms", justify="right")
    s.add_column("target id", overflow="fold")
    for st in t.steps:
        s.add_row(
            st.step,
            st.status,
            str(st.attempts),
            _when(st.done_at or st.last_attempt_at),
            "-" if st.latency_ms is None else str(st.latency_ms),
            st.target_id or "-",
        )
    console.print(s if t.steps else "steps: none yet")
    for o in t.orders:
        console.print(
            f"order (Odoo) {o['order_id']} {o['name']}: state {o['state']}, ref {o['client_order_ref']}, "
            f"{o['amount_total']} {o['currency'] or ''}"
        )
    if chain and chain.get("order_id") and not t.orders:
        console.print(
            f"order (Odoo) {chain['order_id']} {chain.get('order_name') or ''}: not pulled into the warehouse yet"
        )
    console.print(f"picking(s) (Odoo): {', '.join(map(str, t.picking_ids)) or '-'}")
    if t.shipment:
        sh = t.shipment
        console.print(
            f"shipment (EasyPost) {sh['shipment_id']}: tracking {sh['tracking_code']}, status {sh['status'] or '-'}"
            f" at {_ts(sh['status_at'])}, label {sh['label_url'] or '-'}"
        )
    else:
        console.print("shipment (EasyPost): none")
    for e in t.tracking_events:
        console.print(
            f"  tracking {e['tracking_code']} {e['status']} ({e['status_detail'] or '-'}) at {_ts(e['source_updated_at'])}"
        )
    for p in t.payments:
        console.print(
            f"payment (Stripe) {p['payment_id']}: {p['status']} {p['amount']} {p['currency'] or ''}"
        )
    for d in t.dead_letters:
        console.print(
            f"[red]dead letter {d['id']}[/] {d['step']} ({d['target']}) {d['check_name']} {d['status']}: "
            f"{d['reason']}   (integration-assets dlq show {d['id']})"
        )


@outbound.command("trace")
@click.argument("deal_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def trace_cmd(deal_id: str, as_json: bool) -> None:
    """One chain across the systems: deal → order → picking → shipment → tracking events, with each step's
    time, attempts and outcome, and the chain's dead letters. Exit code 1 when nothing is known of DEAL_ID."""
    # lazy: the runner imports the steps and their contracts (pandas), saves 1.6 s
    from integration_assets.outbound.queries import trace

    t = trace(_engine(), deal_id)
    if as_json:
        _json(t.as_dict())
    else:
        render_trace(t)
    if not t.found:
        sys.exit(1)
