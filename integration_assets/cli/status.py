"""``integration-assets status [--json]``: one screen saying, per source entity, whether data is flowing and
whether anything needs a human.

Per source entity: last successful load, freshness state, rows read in the last day, rows quarantined in the
last day, dead letters pending, failing asset checks, open alerts. Sources: the warehouse (loads ledger, dead
letters, alert incidents) and, when there is one, the Dagster instance in DAGSTER_HOME (freshness states
from the FreshnessDaemon, latest check evaluations). Without an instance, freshness is computed from the
last successful load and the policy windows (marked "ledger"), and failing checks come from open alerts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from integration_assets.alerts.incidents import Incident, list_incidents
from integration_assets.contracts.spec import known_entities
from integration_assets.ingest.inbox import inbox_status
from integration_assets.policies import Policies, human_age, load_policies
from integration_assets.quality.outcome import aware, utcnow
from integration_assets.settings import Settings, get_settings, is_set
from integration_assets.warehouse.db import ensure_schema, get_engine
from integration_assets.warehouse.schema import dead_letters, loads, processed_events

_RANK = {"PASS": 0, "UNKNOWN": 1, "WARN": 2, "FAIL": 3}
_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red", "UNKNOWN": "dim"}


def _dagster_instance(settings: Settings) -> Any:
    """The Dagster instance of DAGSTER_HOME (or the sync command's default home), if there is one."""
    # lazy: keeps Dagster out of --help and of a `status` without an instance, saves 1490 ms
    import dagster as dg

    home = settings.dagster_home
    if home.is_dir() if is_set("DAGSTER_HOME") else (home / "dagster.yaml").exists():
        return dg.DagsterInstance.from_config(str(home))
    return None


def _ledger_freshness(
    last: datetime | None, now: datetime, policies: Policies, system: str, entity: str
) -> str:
    if last is None:
        return "UNKNOWN"
    window = policies.for_entity(system, entity).freshness
    age = now - last
    if age >= window.fail:
        return "FAIL"
    if window.warn is not None and age >= window.warn:
        return "WARN"
    return "PASS"


def _ledger(conn: sa.Connection, system: str, entity: str, since: datetime) -> dict[str, Any]:
    ok = sa.and_(
        loads.c.source_system == system,
        loads.c.entity == entity,
        loads.c.status == "succeeded",
        loads.c.kind != "replay",
    )
    last = aware(conn.execute(sa.select(sa.func.max(loads.c.finished_at)).where(ok)).scalar_one())
    read, quarantined, n = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(loads.c.rows_read), 0),
            sa.func.coalesce(sa.func.sum(loads.c.rows_quarantined), 0),
            sa.func.count(),
        ).where(ok, loads.c.finished_at >= since)
    ).one()
    latest = conn.execute(
        sa.select(loads.c.status, loads.c.file_name, loads.c.started_at)
        .where(loads.c.source_system == system, loads.c.entity == entity, loads.c.kind != "replay")
        .order_by(loads.c.started_at.desc())
        .limit(1)
    ).first()
    pending = conn.execute(
        sa.select(sa.func.count()).where(
            dead_letters.c.source_system == system,
            dead_letters.c.entity == entity,
            dead_letters.c.status == "pending",
        )
    ).scalar_one()
    return {
        "last_successful_load": last,
        "loads_last_day": int(n),
        "rows_last_day": int(read),
        "quarantined_last_day": int(quarantined),
        "dead_letters_pending": int(pending),
        "latest_load_status": latest.status if latest else None,
    }


def _incident(i: Incident) -> dict[str, Any]:
    return {
        "key": i.key,
        "severity": i.severity,
        "title": i.title,
        "since": i.opened_at.isoformat(),
        "seen": i.fire_count,
    }


def collect_status(
    *,
    settings: Settings | None = None,
    instance: Any = None,
    now: datetime | None = None,
    use_dagster: bool = True,
) -> dict[str, Any]:
    """Everything the status screen shows, as JSON-able data."""
    settings = settings or get_settings()
    ensure_schema(settings.warehouse_url)
    engine = get_engine(settings.warehouse_url)
    policies = load_policies()
    now = now or utcnow()
    if instance is None and use_dagster:
        instance = _dagster_instance(settings)

    entities = known_entities()
    states: dict[Any, Any] = {}
    checks: dict[Any, Any] = {}
    run_attempts = None
    partitions: list[dict[str, Any]] | None = None
    if instance is not None:
        # lazy: keeps the Dagster layer out of --help and of a `status` without an instance, saves 1920 ms
        import dagster as dg

        from integration_assets.assets.files import canonical_key, raw_key
        from integration_assets.checks import check_specs, dagster_internals
        from integration_assets.sensors.inbox import run_attempts as sensor_run_attempts

        run_attempts = sensor_run_attempts(instance)

        def keys_of(system: str, entity: str, table: str) -> tuple[Any, Any]:
            return raw_key(system, entity), canonical_key(table)

        asset_keys = [k for s, e, t in entities for k in keys_of(s, e, t)]
        states = dagster_internals.freshness_states(instance, asset_keys)
        check_keys = [
            dg.AssetCheckKey(canonical_key(spec.table), spec.name)
            for spec in check_specs({t for _, _, t in entities}, policies)
        ]
        checks = dagster_internals.latest_check_states(instance, check_keys)
        partitions = partition_section(instance, now)

    incidents = list_incidents("open", engine=engine)
    claimed: set[str] = set()
    rows = []
    with engine.connect() as conn:
        for system, entity, table in entities:
            row: dict[str, Any] = {
                "source": f"{system}/{entity}",
                "system": system,
                "entity": entity,
                "table": table,
            }
            row |= _ledger(conn, system, entity, now - timedelta(days=1))
            fresh = None
            if states:
                mine = [states[k] for k in keys_of(system, entity, table) if k in states]
                graded = [v.state for v in mine if v.state in _RANK]
                if graded:
                    fresh = (max(graded, key=_RANK.__getitem__), "dagster")
            if fresh is None:
                fresh = (
                    _ledger_freshness(row["last_successful_load"], now, policies, system, entity),
                    "ledger",
                )
            row["freshness"], row["freshness_source"] = fresh
            prefix = f"check:warehouse/{table}:"
            if checks:
                row["failing_checks"] = sorted(
                    f"{k.name} ({s.severity or 'ERROR'})"
                    if s.status == "failed"
                    else f"{k.name} (could not run)"
                    for k, s in checks.items()
                    if k.asset_key.path == ["warehouse", table] and s.status in ("failed", "execution_failed")
                )
            else:
                row["failing_checks"] = sorted(
                    i.key.removeprefix(prefix) for i in incidents if i.key.startswith(prefix)
                )
            mine_alerts = [
                i
                for i in incidents
                if (i.source_system, i.entity) == (system, entity) or i.key.startswith(prefix)
            ]
            claimed |= {i.key for i in mine_alerts}
            row["open_alerts"] = [_incident(i) for i in mine_alerts]
            last = row["last_successful_load"]
            row["last_successful_load"] = last.isoformat() if last else None
            row["last_successful_load_age"] = human_age(now - last) if last else None
            rows.append(row)
    return {
        "generated_at": now.isoformat(),
        "warehouse": engine.url.render_as_string(hide_password=True),
        "dagster_instance": instance is not None,
        "entities": rows,
        "other_open_alerts": [_incident(i) for i in incidents if i.key not in claimed],
        "events": event_status(engine, policies),
        "inbox": inbox_status(settings, engine, run_attempts),
        "partitions": partitions,
    }


def partition_section(instance: Any, now: datetime) -> list[dict[str, Any]]:
    """Per partitioned API pull: failed and missing days up to yesterday, and the backfill command for them."""
    # lazy: the partitioned assets and the asset status cache are Dagster; only read with an instance
    from integration_assets.sensors.partitions import partition_health

    return [h.as_dict() for h in partition_health(instance, now=now)]


def render(status: dict[str, Any]) -> None:
    table = Table(title=f"Integration status at {status['generated_at'][:19]}Z", title_justify="left")
    for col, just in (
        ("source", "left"),
        ("last successful load", "left"),
        ("freshness", "left"),
        ("rows 24h", "right"),
        ("quarantined 24h", "right"),
        ("dead letters", "right"),
        ("failing checks", "left"),
        ("open alerts", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in status["entities"]:
        age = f"{r['last_successful_load_age']} ago" if r["last_successful_load_age"] else "never"
        fresh = f"[{_STYLE.get(r['freshness'], '')}]{r['freshness']}[/]" + (
            " (ledger)" if r["freshness_source"] == "ledger" else ""
        )
        pending = r["dead_letters_pending"]
        alerts = len(r["open_alerts"])
        table.add_row(
            r["source"],
            age,
            fresh,
            str(r["rows_last_day"]),
            f"[yellow]{r['quarantined_last_day']}[/]" if r["quarantined_last_day"] else "0",
            f"[yellow]{pending}[/]" if pending else "0",
            "[red]" + ", ".join(r["failing_checks"]) + "[/]" if r["failing_checks"] else "-",
            f"[red]{alerts}[/]" if alerts else "0",
        )
    console = Console(width=max(Console().width, 140))
    console.print(table)
    open_alerts = [a for r in status["entities"] for a in r["open_alerts"]] + status["other_open_alerts"]
    for a in open_alerts:
        console.print(
            f"[{'red' if a['severity'] != 'warning' else 'yellow'}]{a['severity']}[/] {a['key']}: {a['title']} "
            f"(since {a['since'][:19]}Z)",
            highlight=False,
        )
    _render_partitions(console, status.get("partitions"))
    _render_events(console, status.get("events"))
    render_inbox_status(console, status.get("inbox"))
    if not status["dagster_instance"]:
        console.print(
            "[dim]No Dagster instance found (DAGSTER_HOME): freshness from the loads ledger, failing "
            "checks from open alerts.[/]"
        )


def _days(keys: list[str], limit: int = 3) -> str:
    from integration_assets.sensors.partitions import day_ranges

    ranges = [a if a == b else f"{a}..{b}" for a, b in day_ranges(keys)]
    return ", ".join(ranges[:limit]) + (
        f" and {len(ranges) - limit} more range(s)" if len(ranges) > limit else ""
    )


def _render_partitions(console: Any, rows: list[dict[str, Any]] | None) -> None:
    """The Partitions section: the daily API-pull partitions that failed or never ran, with the command."""
    if rows is None:
        return
    bad = [r for r in rows if r["failed"] or r["missing"]]
    done = sum(r["materialized"] for r in rows)
    total = sum(r["partitions"] for r in rows)
    console.print(
        f"Partitions (daily API pulls, up to yesterday): {done} of {total} materialized; "
        f"{len(bad)} of {len(rows)} pull(s) with failed or missing days",
        highlight=False,
    )
    for r in bad:
        parts = []
        if r["failed"]:
            parts.append(f"[red]{len(r['failed'])} failed[/] ({_days(r['failed'])})")
        if r["missing"]:
            parts.append(f"[yellow]{len(r['missing'])} missing[/] ({_days(r['missing'])})")
        console.print(f"  {r['system']}/{r['entity']}: " + "; ".join(parts), highlight=False)
        console.print(f"    {r['command']}", highlight=False, soft_wrap=True)


def _jsonable(status: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(status, default=str))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(as_json: bool) -> None:
    """Per source entity: last successful load, freshness, rows and quarantined rows in the last day, dead letters
    pending, failing checks and open alerts."""
    data = collect_status()
    if as_json:
        click.echo(json.dumps(_jsonable(data), sort_keys=True))
    else:
        render(data)


# -- webhook events: ignored types and key collisions --------------------------------------------------------
def ignored_event_counts(engine: sa.Engine) -> dict[tuple[str, str], int]:
    """Events ignored by ``events.ignore`` (policies.yaml), per (source, event type), from the
    processed_events ledger (outcome ``ignored`` without a target table; kept for retention.processed_events)."""
    pe = processed_events
    stmt = (
        sa.select(pe.c.source, pe.c.event_type, sa.func.count())
        .where(pe.c.outcome == "ignored", pe.c.target_table.is_(None))
        .group_by(pe.c.source, pe.c.event_type)
    )
    with engine.connect() as conn:
        return {(r[0], r[1]): int(r[2]) for r in conn.execute(stmt)}


def event_status(engine: sa.Engine, policies: Policies) -> dict[str, Any]:
    """The ``events.ignore`` patterns, how many events each ignored type had, and the key collisions
    (dead letters with check ``key_collision``: two different events under one key)."""
    with engine.connect() as conn:
        collisions = conn.execute(
            sa.select(sa.func.count()).where(
                dead_letters.c.stage == "event", dead_letters.c.check_name == "key_collision"
            )
        ).scalar_one()
    return {
        "ignore": {source: list(patterns) for source, patterns in policies.events.ignore.items()},
        "ignored": [
            {"source": source, "event_type": kind, "count": n}
            for (source, kind), n in sorted(ignored_event_counts(engine).items())
        ],
        "key_collisions": int(collisions),
    }


def _render_events(console: Any, events: dict[str, Any] | None) -> None:
    if not events or not (events["ignore"] or events["ignored"] or events["key_collisions"]):
        return
    patterns = "; ".join(f"{s}: {', '.join(p)}" for s, p in sorted(events["ignore"].items()) if p) or "none"
    console.print(f"Webhook event types ignored (policies.yaml events.ignore): {patterns}", highlight=False)
    for row in events["ignored"]:
        console.print(f"  {row['source']} {row['event_type']}: {row['count']} ignored", highlight=False)
    if events["key_collisions"]:
        console.print(
            f"[yellow]{events['key_collisions']} webhook key collision(s)[/] (dead letters, check "
            "key_collision): integration-assets dlq list --check key_collision",
            highlight=False,
        )


def open_alert_keys(status: dict[str, Any]) -> Iterable[str]:
    """Every open alert key on the screen (for scripts and tests)."""
    for r in status["entities"]:
        yield from (a["key"] for a in r["open_alerts"])
    yield from (a["key"] for a in status["other_open_alerts"])


def render_inbox_status(console: Any, data: dict[str, Any] | None) -> None:
    """The inbox lines of the status screen (``console`` is a rich Console)."""
    if not data:
        return
    out = console.print
    stuck, ignored = data["stuck"], data["ignored"]
    out(
        f"Inbox: {data['waiting']} file(s) waiting, {len(stuck)} stuck, {data['settling']} still being written, "
        f"{len(ignored)} left alone (temporary names)",
        highlight=False,
    )
    for s in stuck:
        out(
            f"  [red]stuck[/] {s['file']}: {s['attempts']} failed attempt(s); last error: {s['last_error']}",
            highlight=False,
        )
    for i in ignored:
        out(f"  [dim]left alone[/] {i['file']}: {i['why']}", highlight=False)
    if ignored:
        out(f"  [dim]rule: {data['ignore_rule']}[/]", highlight=False)
