"""``integration-assets dlq …``: review, replay, discard and export dead letters."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from integration_assets.cli.sync import open_instance
from integration_assets.dead_letters import export as dl_export
from integration_assets.dead_letters import queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import ensure_schema, get_engine


def _engine():  # type: ignore[no-untyped-def]
    s = get_settings()
    ensure_schema(s.warehouse_url)
    return get_engine(s.warehouse_url)


def _filter_options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(
        [
            click.option(
                "--status",
                type=click.Choice([*queries.STATUSES, "any"]),
                default="pending",
                show_default=True,
            ),
            click.option("--source", help="Source system, e.g. hubspot."),
            click.option("--entity", help="Entity, e.g. contacts or sale.order."),
            click.option(
                "--stage",
                type=click.Choice(["file", "parse", "map", "validate", "load", "event", "outbound"]),
            ),
            click.option("--check", help="Check name prefix, e.g. unknown_value or reference:."),
            click.option("--reason", help="Text contained in the reason."),
        ]
    ):
        f = opt(f)
    return f


def _flt(
    ids=(), status="pending", source=None, entity=None, stage=None, check=None, reason=None, limit=None
) -> Filter:  # type: ignore[no-untyped-def]
    return Filter(
        ids=tuple(ids),
        status=None if status == "any" else status,
        source=source,
        entity=entity,
        stage=stage,
        check=check,
        reason=reason,
        limit=limit,
    )


@click.group("dlq")
def dlq() -> None:
    """Dead letters: quarantined rows, files and events."""


@dlq.command("list")
@_filter_options
@click.option("--limit", type=int, default=200, show_default=True)
@click.option(
    "--wide", is_flag=True, help="One line per dead letter (nothing wrapped), for wide terminals and grep."
)
@click.option("--json", "as_json", is_flag=True)
def list_(status, source, entity, stage, check, reason, limit, wide, as_json) -> None:  # type: ignore[no-untyped-def]
    """List dead letters (pending by default)."""
    with _engine().connect() as conn:
        rows = queries.select(conn, _flt((), status, source, entity, stage, check, reason, limit))
    if as_json:
        click.echo(json.dumps([dl_export.as_json_row(r) for r in rows], default=str))
        return
    render_list(rows, wide=wide)


def render_list(rows: list[dict], *, wide: bool = False, width: int | None = None) -> None:  # type: ignore[type-arg]
    """The dead letters as a table. The reason is shown whole, what to do included: wrapped at word boundaries
    in its column, or, ``wide``, on the row's one line (the table as wide as it needs)."""
    t = Table(title=f"{len(rows)} dead letter(s)", title_justify="left", expand=False)
    longest_key = max((len(str(r["natural_key"] or "")) for r in rows), default=3)
    # Ids and keys stay whole; the reason gets the room and wraps at word boundaries; long check names
    # (a pandera check with its pattern) and entities fold within a bounded column.
    columns: dict[str, dict[str, Any]] = {
        "id": {"no_wrap": True, "justify": "right"},
        "status": {"max_width": 9},
        "source": {"max_width": 18, "overflow": "fold"},
        "stage": {"max_width": 8},
        "check": {"max_width": 20, "overflow": "fold"},
        "key": {"no_wrap": True, "min_width": min(longest_key, 40)},
        "reason": {"min_width": 30, "overflow": "fold"},
        "seen": {"max_width": 10},
        "tries": {"no_wrap": True, "justify": "right"},
    }
    for name, opts in columns.items():
        if wide:
            opts = {"no_wrap": True, "justify": opts.get("justify", "left")}
        t.add_column(name, **opts)
    for r in rows:
        t.add_row(
            str(r["id"]),
            r["status"],
            f"{r['source_system']}/{r['entity']}",
            r["stage"],
            r["check_name"],
            str(r["natural_key"] or ""),
            " ".join((r["reason"] or "").split()),
            f"{r['last_seen']:%Y-%m-%d %H:%M}",
            str(r["attempts"]),
        )
    if wide:
        # As wide as the longest row: the terminal (or a pager, or grep) gets one line per dead letter.
        Console(width=100_000, soft_wrap=True).print(t)
    else:
        Console(width=width or max(Console().width, 140)).print(t)


@dlq.command("show")
@click.argument("dl_id", type=int)
def show(dl_id: int) -> None:
    """One dead letter in full: reason, every finding, the raw record and its audit trail."""
    with _engine().connect() as conn:
        try:
            row = queries.get(conn, dl_id)
        except queries.DeadLetterError as exc:
            raise click.ClickException(str(exc)) from exc
    out = dl_export.as_json_row(row, with_raw=True)
    try:
        out["raw_record"] = json.loads(out["raw_record"])
    except (TypeError, ValueError):
        pass
    out["actions"] = [dl_export.as_json_row(a) for a in row["actions"]]
    click.echo(json.dumps(out, indent=2, default=str, ensure_ascii=False))


@dlq.command("replay")
@click.argument("ids", type=int, nargs=-1)
@click.option(
    "--filter", "use_filter", is_flag=True, help="Replay what the filter options select instead of IDS."
)
@_filter_options
@click.option(
    "--contract",
    "contract_id",
    help="Contract version to use, e.g. hubspot.contacts.csv@v2 (default: newest that fits).",
)
@click.option(
    "--dry-run", is_flag=True, help="Show what would load and what would fail again; change nothing."
)
@click.option("--json", "as_json", is_flag=True)
def replay_cmd(
    ids, use_filter, status, source, entity, stage, check, reason, contract_id, dry_run, as_json
) -> None:  # type: ignore[no-untyped-def]
    """Replay dead letters IDS (or --filter …) in a Dagster run of the replay_dead_letters job: rows and
    rejected files through the current (or --contract) contract, events back onto the event queue, outbound
    writes through their step again (once the target, the contract or the data is fixed)."""
    if not ids and not use_filter:
        raise click.UsageError("give dead letter IDS, or --filter with filter options")
    # lazy: keeps Dagster and the code location out of the other dlq commands and --help, saves 2130 ms
    from integration_assets.definitions import defs

    _engine()
    cfg = {
        "ids": list(ids),
        "status": "" if status == "any" else status,
        "source": source,
        "entity": entity,
        "stage": stage,
        "check": check,
        "reason": reason,
        "contract_id": contract_id,
        "dry_run": dry_run,
        "actor": store.actor(),
    }
    with open_instance(get_settings()) as instance:
        res = defs.resolve_job_def("replay_dead_letters").execute_in_process(
            instance=instance,
            run_config={
                "ops": {"replay_dead_letters_op": {"config": cfg}},
                "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            },
            tags={"integration/trigger": "cli-dlq-replay"},
            raise_on_error=False,
        )
    if not res.success:
        click.echo(f"replay run {res.run_id} failed; see the Dagster UI", err=True)
        sys.exit(1)
    summary = res.output_for_node("replay_dead_letters_op")
    if as_json:
        click.echo(json.dumps(summary | {"run_id": res.run_id}, default=str))
        return
    verb = "would load" if dry_run else "replayed"
    click.echo(
        f"run {res.run_id}: {summary['selected']} selected, {summary['replayed']} {verb}, "
        f"{summary['still_failing']} still failing, {summary['skipped']} skipped"
    )
    for k, v in summary["failing"].items():
        click.echo(f"  {k}: still failing: {v}")
    for k, v in summary["skipped_ids"].items():
        click.echo(f"  {k}: skipped: {v}")


@dlq.command("discard")
@click.argument("ids", type=int, nargs=-1, required=True)
@click.option("--note", required=True, help="Why these need no load (kept in the audit trail).")
def discard_cmd(ids, note) -> None:  # type: ignore[no-untyped-def]
    """Mark dead letters as discarded, with a note."""
    with _engine().begin() as conn:
        try:
            n = store.discard(conn, ids, note)
        except queries.DeadLetterError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"discarded {n} dead letter(s)")


@dlq.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default stdout)."
)
@_filter_options
def export(fmt, output, status, source, entity, stage, check, reason) -> None:  # type: ignore[no-untyped-def]
    """Export dead letters for review: no raw payloads or PII, spreadsheet formulas neutralised."""
    with _engine().connect() as conn:
        text = dl_export.export_csv(conn, _flt((), status, source, entity, stage, check, reason))
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
