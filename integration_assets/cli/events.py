"""``integration-assets events …``: drain the webhook event queue, replay event dead letters, show the state."""

from __future__ import annotations

import json
import sys
from typing import Any, cast

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from integration_assets import providers
from integration_assets.dead_letters.queries import STATUSES, Filter, Status
from integration_assets.events.replay import replay_events
from integration_assets.queue import QueueError, open_queue
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import ensure_schema, get_engine
from integration_assets.warehouse.schema import dead_letters, processed_events

EX_TEMPFAIL = 75  # sysexits.h: try again later (the warehouse or the queue was unavailable)


def _engine() -> sa.Engine:
    settings = get_settings()
    ensure_schema(settings.warehouse_url)
    return get_engine(settings.warehouse_url)


@click.group("events")
def events() -> None:
    """Webhook events: drain the queue into the warehouse, replay dead-lettered events."""


def render_report(report: dict[str, Any], title: str = "Event drain") -> None:
    t = Table(title=f"{title} {report['drain_id']} ({report['backend']} queue)", title_justify="left")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for key, label in (
        ("events_in", "events in"),
        ("applied", "applied"),
        ("stale", "stale (newer state kept)"),
        ("ignored", "ignored"),
        ("duplicates", "duplicates suppressed"),
        ("dead_lettered", "dead-lettered"),
        ("retried", "given back (retry later)"),
        ("batches", "batches"),
        ("events_per_s", "events/s"),
        ("queue_depth", "queue depth after"),
        ("oldest_age_s", "oldest message age (s)"),
    ):
        value = report.get(key)
        t.add_row(label, "-" if value is None else str(value))
    console = Console()
    console.print(t)
    if report["tables"]:
        console.print(
            "applied per table: " + ", ".join(f"{k} {v}" for k, v in sorted(report["tables"].items()))
        )
    if report["dead_letter_reasons"]:
        console.print(
            "dead letters: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report["dead_letter_reasons"].items()))
            + "   (integration-assets dlq list --stage event)"
        )
    if report["outage"]:
        console.print(f"[yellow]stopped early[/]: {report['outage']}")


@events.command("drain")
@click.option(
    "--max",
    "max_events",
    type=click.IntRange(1),
    default=None,
    help="At most this many deliveries (default: the run default, 50000).",
)
@click.option("--batch", "batch_size", type=click.IntRange(1), default=None, help="Events per transaction.")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Wait this long for a first event when the queue is empty.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def drain_cmd(max_events: int | None, batch_size: int | None, wait_s: float, as_json: bool) -> None:
    """Apply waiting events once, in-process: the same drain the events_queue_sensor's runs execute.

    Exit code 0 when the drain ran (even if events were dead-lettered), 75 when it stopped because the
    warehouse or the queue was unavailable (the events stay queued), 1 on an accounting error."""
    # lazy: keeps pandas and pandera (the apply path) out of --help and `events status|replay`, saves 2980 ms
    from integration_assets.events.drain import DEFAULT_BATCH, DEFAULT_MAX_EVENTS, drain

    report = drain(
        engine=_engine(),
        max_events=max_events or DEFAULT_MAX_EVENTS,
        batch_size=batch_size or DEFAULT_BATCH,
        wait_s=wait_s,
    )
    out = report.as_dict()
    if as_json:
        click.echo(json.dumps(out, default=str))
    else:
        render_report(out)
    if not report.balanced:
        sys.exit(1)
    sys.exit(EX_TEMPFAIL if report.outage else 0)


@events.command("replay")
@click.argument("ids", type=int, nargs=-1)
@click.option(
    "--filter", "use_filter", is_flag=True, help="Replay what the filter options select instead of IDS."
)
@click.option("--status", type=click.Choice([*STATUSES, "any"]), default="pending", show_default=True)
@click.option("--source", type=click.Choice(providers.names()))
@click.option("--type", "event_type", help="Event type, e.g. payment_intent.succeeded.")
@click.option("--check", help="Check name prefix, e.g. unknown_object or delivery_limit.")
@click.option("--reason", help="Text contained in the reason.")
@click.option("--dry-run", is_flag=True, help="Show what would be re-enqueued; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def replay_cmd(
    ids: tuple[int, ...],
    use_filter: bool,
    status: str,
    source: str | None,
    event_type: str | None,
    check: str | None,
    reason: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Re-enqueue dead-lettered events IDS (or --filter …): their stored payloads go back on the queue under
    the same event id, and the next drain applies them (a duplicate of an applied event changes nothing)."""
    if not ids and not use_filter:
        raise click.UsageError("give dead letter IDS, or --filter with filter options")
    flt = Filter(
        ids=tuple(ids),
        status=None if status == "any" else cast(Status, status),  # click.Choice checked it
        source=source,
        entity=event_type,
        check=check,
        reason=reason,
    )
    with open_queue() as queue:
        out = replay_events(_engine(), queue, flt, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(out.as_dict(), default=str))
        return
    verb = "would re-enqueue" if dry_run else "re-enqueued"
    click.echo(f"{out.selected} selected, {len(out.replayed)} {verb}, {len(out.skipped)} skipped")
    for dl_id, why in sorted(out.skipped.items()):
        click.echo(f"  {dl_id}: skipped: {why}")


@events.command("status")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(as_json: bool) -> None:
    """The queue (depth, oldest message), the ledger (events per source and outcome) and pending event dead
    letters per check."""
    out: dict[str, Any] = {}
    try:
        with open_queue() as queue:
            out["queue"] = {
                "backend": queue.backend,
                "depth": queue.depth(),
                "oldest_age_s": queue.oldest_age_seconds(),
            }
    except QueueError as exc:
        out["queue"] = {"error": str(exc)}
    p, d = processed_events.c, dead_letters.c
    with _engine().connect() as conn:
        out["ledger"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(
                    p.source,
                    p.outcome,
                    sa.func.count().label("events"),
                    sa.func.max(p.applied_at).label("last"),
                )
                .group_by(p.source, p.outcome)
                .order_by(p.source, p.outcome)
            )
        ]
        out["dead_letters"] = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(
                    d.source_system.label("source"),
                    d.check_name.label("check"),
                    sa.func.count().label("pending"),
                )
                .where(d.stage == "event", d.status == "pending")
                .group_by(d.source_system, d.check_name)
                .order_by(d.source_system, d.check_name)
            )
        ]
    if as_json:
        click.echo(json.dumps(out, default=str))
        return
    q = out["queue"]
    click.echo(
        f"queue: {q}"
        if "error" in q
        else f"queue ({q['backend']}): {q['depth']} waiting, oldest {q['oldest_age_s']} s"
    )
    for r in out["ledger"]:
        click.echo(f"  {r['source']:9} {r['outcome']:8} {r['events']:>8}   last {r['last']}")
    for r in out["dead_letters"]:
        click.echo(f"  dead letters {r['source']:9} {r['check']:24} {r['pending']:>6} pending")
