"""``integration-assets demo``: generate a realistic sample and run the whole pipeline on the embedded default."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from integration_assets.cli.sync import (
    SyncResult,
    ensure_dagster_home,
    open_instance,
    render_summary,
    run_pending,
)
from integration_assets.events.drain import new_drain_id
from integration_assets.queue import open_queue
from integration_assets.sandbox.batch import generate_batch_samples
from integration_assets.sandbox.demo_outbound import render_outbound_summary, run_demo_outbound
from integration_assets.sandbox.events import generate_event_samples, post_events
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import ensure_schema, get_engine
from integration_assets.warehouse.schema import contacts, dead_letters, processed_events, sales_orders


def run_demo(seed: int = 7) -> SyncResult:
    settings = get_settings()
    ensure_schema(settings.warehouse_url)
    ensure_dagster_home(settings)
    generate_batch_samples(settings.inbox_dir, seed=seed)
    # The demo wrote the files itself, so there is nothing to wait for.
    return run_pending(dataclasses.replace(settings, inbox_settle_seconds=0))


def run_demo_events(seed: int = 7) -> dict[str, Any]:
    """The event path: signed sample webhooks posted to the real receiver (in-process), enqueued on the
    configured queue (the embedded SQL queue by default), applied by one run of the drain_events job."""
    # lazy: keeps Dagster out of --help (the top-level one lists this command), saves 1800 ms
    from integration_assets.assets.events import DRAIN_OP, DRAIN_TAG
    from integration_assets.definitions import defs  # lazy: as the line above

    settings = get_settings()
    engine = get_engine(settings.warehouse_url)
    started = datetime.now(UTC)
    with engine.connect() as conn:
        contact_ids = list(
            conn.scalars(sa.select(contacts.c.source_id).order_by(contacts.c.source_id).limit(6))
        )
        order_ids = list(conn.scalars(sa.select(sales_orders.c.source_id).order_by(sales_orders.c.source_id)))
    sample = generate_event_samples(seed, contact_ids=contact_ids, order_ids=order_ids)
    http = post_events(sample.deliveries, lambda: open_queue(settings.queue_url))
    drain_id = new_drain_id()
    with open_instance(settings) as instance:
        res = defs.resolve_job_def("drain_events").execute_in_process(
            instance=instance,
            run_config={
                "ops": {DRAIN_OP: {"config": {"drain_id": drain_id}}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            tags={DRAIN_TAG: drain_id, "integration/trigger": "demo"},
            raise_on_error=False,
        )
    p, d = processed_events.c, dead_letters.c
    with engine.connect() as conn:
        outcomes = conn.execute(
            sa.select(p.source, p.outcome, sa.func.count())
            .where(p.applied_at >= started)
            .group_by(p.source, p.outcome)
        ).all()
        letters = conn.execute(
            sa.select(d.source_system, d.check_name, sa.func.count())
            .where(d.stage == "event", d.last_seen >= started)
            .group_by(d.source_system, d.check_name)
        ).all()
    delivered = Counter(ev.provider for ev in sample.deliveries)
    events = Counter(ev.provider for ev in sample.events)
    rows = []
    for source in ("stripe", "hubspot", "easypost"):
        got = {o: n for s, o, n in outcomes if s == source}
        dead = {c: n for s, c, n in letters if s == source}
        rows.append(
            {
                "source": source,
                "deliveries": delivered[source],
                "events": events[source],
                "applied": got.get("applied", 0),
                "stale": got.get("stale", 0),
                "ignored": got.get("ignored", 0),
                "duplicates": delivered[source] - events[source],
                "dead_lettered": sum(dead.values()),
                "dead_letter_checks": dead,
            }
        )
    return {
        "run_id": res.run_id,
        "success": res.success,
        "drain_id": drain_id,
        "http": {str(k): v for k, v in sorted(http.items())},
        "sources": rows,
    }


def render_events_summary(summary: dict[str, Any]) -> None:
    table = Table(
        title="Demo: event path (signed webhooks → receiver → queue → drain run → warehouse)",
        title_justify="left",
        min_width=110,
    )
    columns = ("deliveries", "events", "applied", "stale", "ignored", "duplicates", "dead_lettered")
    table.add_column("source")
    for col in columns:
        table.add_column(col.replace("_", "-"), justify="right")
    for r in summary["sources"]:
        table.add_row(r["source"], *(str(r[c]) for c in columns))
    table.add_section()
    table.add_row("total", *(str(sum(r[c] for r in summary["sources"])) for c in columns), style="bold")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    http = ", ".join(f"{n}× HTTP {code}" for code, n in summary["http"].items())
    console.print(
        f"receiver: {http}; drain run {summary['run_id']} ({'ok' if summary['success'] else 'FAILED'})"
    )
    for r in summary["sources"]:
        for check, n in sorted(r["dead_letter_checks"].items()):
            console.print(f"[yellow]dead-lettered[/] {r['source']}: {n}× {check}")
    console.print(
        "stale = older than a state already applied (arrived late, or superseded in the same batch); "
        "duplicates = provider retries, applied once"
    )


@click.command("demo")
@click.option("--seed", default=7, show_default=True, help="Seed of the sample generator.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(seed: int, as_json: bool) -> None:
    """Generate HubSpot/Odoo sample exports (with duplicates, updates, bad rows, one drifted file) and load them;
    then post signed Stripe/HubSpot/EasyPost sample webhooks to the receiver and drain them into the warehouse.

    Then win a handful of deals and carry them to Odoo orders, EasyPost labels and back (the outbound chain,
    against fakes the demo starts), one of them held by a field the demo's Odoo starts requiring."""
    settings = get_settings()
    result = run_demo(seed)
    events = run_demo_events(seed)
    outbound = run_demo_outbound(seed)
    if as_json:
        click.echo(json.dumps(result.as_dict() | {"events": events, "outbound": outbound}, default=str))
        return
    render_summary(result, title="Demo: batch path (HubSpot + Odoo exports → warehouse)")
    click.echo()
    render_events_summary(events)
    click.echo()
    render_outbound_summary(outbound)
    click.echo(f"\nWarehouse: {settings.warehouse_url}")
    click.echo(
        "Quarantined rows: integration-assets dlq list   ·   Events: integration-assets events status   ·   "
        "UI: make dev → http://127.0.0.1:3000"
    )
    first = next((c["deal_id"] for c in outbound["chains"] if c["status"] == "written_back"), "<deal id>")
    click.echo(
        f"Outbound: integration-assets outbound status   ·   integration-assets outbound trace {first}"
    )
