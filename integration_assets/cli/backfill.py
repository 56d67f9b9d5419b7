"""``integration-assets backfill SYSTEM ENTITY --from DAY --to DAY [--only-failed] [--missing]``: re-run days of
an API pull after an outage or a contract fix.

It launches a Dagster backfill through the UI's own GraphQL call (``launchPartitionBackfill``, asset selection
and partition names), so it is the same backfill as asset → Materialize → date range → Launch backfill: listed
under Runs › Backfills, run by the backfill daemon (``make dev`` or ``dagster-daemon``) in runs of at most
``partitions.max_partitions_per_run`` days. A backfill still running over any of the same days is refused
(``--wait`` waits for it instead), so no day is pulled and written by two backfills at once.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import Any

import click

from integration_assets.settings import get_settings

_POLL_S = 5.0


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a day as YYYY-MM-DD") from None


@click.command(
    help="Launch a Dagster backfill of SYSTEM ENTITY's daily API-pull partitions from --from to --to (UTC days, "
    "both included), as the UI's Launch backfill does."
)
@click.argument("system")
@click.argument("entity")
@click.option("--from", "start", required=True, callback=_day, help="First day (YYYY-MM-DD, UTC).")
@click.option("--to", "end", required=True, callback=_day, help="Last day, included (YYYY-MM-DD, UTC).")
@click.option("--only-failed", is_flag=True, help="Only the days whose latest run failed.")
@click.option("--missing", is_flag=True, help="Only the days never materialized (with --only-failed: both).")
@click.option(
    "--wait", is_flag=True, help="Wait for a running backfill over the same days instead of refusing."
)
@click.option("--wait-timeout", type=float, default=3600.0, show_default=True, help="Seconds --wait waits.")
def backfill(
    system: str,
    entity: str,
    start: date,
    end: date,
    only_failed: bool,
    missing: bool,
    wait: bool,
    wait_timeout: float,
) -> None:
    # lazy: keeps Dagster and the code location out of --help, saves ~3 s
    from integration_assets.cli.sync import open_instance
    from integration_assets.sensors import partitions as p

    try:
        system, entity, key = p.resolve(system, entity)
        keys = p.partition_range(system, start, end)
    except p.BackfillError as exc:
        raise click.UsageError(str(exc)) from None
    instance = open_instance(get_settings())
    if only_failed or missing:
        health = p.partition_states(instance, system, entity)
        pick = set(health.failed if only_failed else ()) | set(health.missing if missing else ())
        keys = [k for k in keys if k in pick]
        if not keys:
            what = " or ".join(w for w, on in (("failed", only_failed), ("missing", missing)) if on)
            click.echo(
                f"No {what} partition of {system}/{entity} from {start} to {end}: nothing to backfill."
            )
            return
    with p.workspace_for(instance) as process:
        deadline = time.monotonic() + wait_timeout
        while True:
            try:
                backfill_id = p.launch_backfill(
                    process,
                    key,
                    keys,
                    title=f"{system}/{entity} {keys[0]}..{keys[-1]}",
                    tags={"integration/launched_by": "cli"},
                )
                break
            except p.BackfillError as exc:
                overlapping = p.active_overlaps(process.create_request_context(), key, keys)
                if not (wait and overlapping) or time.monotonic() > deadline:
                    raise click.ClickException(str(exc)) from None
                click.echo(f"Waiting: {p.describe_overlaps(overlapping)}", err=True)
                time.sleep(_POLL_S)
    _print_launched(backfill_id, key, keys)


def _print_launched(backfill_id: str, key: Any, keys: list[str]) -> None:
    ranges = ", ".join(a if a == b else f"{a}..{b}" for a, b in _ranges(keys))
    click.echo(f"Backfill {backfill_id} launched: {key.to_user_string()}, {len(keys)} partition(s): {ranges}")
    click.echo(
        f"Follow it in the UI at /runs/b/{backfill_id} (Runs › Backfills), or with `integration-assets status`."
    )
    click.echo("The backfill daemon runs it (make dev, or dagster-daemon run).")


def _ranges(keys: list[str]) -> list[tuple[str, str]]:
    from integration_assets.sensors.partitions import day_ranges

    return day_ranges(keys)
