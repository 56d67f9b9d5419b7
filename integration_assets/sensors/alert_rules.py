"""What the alert sensors decide: from check states, freshness states, runs, dead letters and connector HTTP
stats to incidents fired or resolved through ``alerts.notifier.Notifier``. The sensor definitions (ticks, cursors,
intervals) are in ``sensors/alerts.py``.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

import dagster as dg
import sqlalchemy as sa

from integration_assets.alerts.incidents import Alert, Severity, list_incidents
from integration_assets.alerts.notifier import Notifier
from integration_assets.alerts.runbook import fill as fill_runbook
from integration_assets.assets.files import ENTITY_TAG, canonical_key, raw_key
from integration_assets.checks import dagster_internals
from integration_assets.contracts.spec import entity_slug, known_entities
from integration_assets.policies import (
    CheckName,
    FreshnessWindow,
    Policies,
    format_duration,
    human_age,
)
from integration_assets.quality.connector_health import http_error_health, prune
from integration_assets.sensors.partitions import day_ranges, partition_health
from integration_assets.warehouse.schema import dead_letters

ALERT_SEVERITY: dict[str, Severity] = {"WARN": "warning", "ERROR": "error"}
KNOWN_CHECKS = frozenset(get_args(CheckName))
_DETAIL_LIST_ITEMS = 10


@dataclass(frozen=True)
class Subject:
    """The source entity behind an asset (for the alert's source/entity fields and runbook placeholders)."""

    system: str | None = None
    entity: str | None = None

    def runbook(self, text: str) -> str:
        return fill_runbook(text, system=self.system, entity=self.entity)


def subjects() -> dict[dg.AssetKey, Subject]:
    """raw/<system>/<entity> and warehouse/<table> -> their (system, entity)."""
    out: dict[dg.AssetKey, Subject] = {}
    for system, entity, table in known_entities():
        out[raw_key(system, entity)] = Subject(system, entity)
        out.setdefault(canonical_key(table), Subject(system, entity))
    return out


def _details(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Check metadata trimmed for a message: scalars, and the first items of lists."""
    out: dict[str, Any] = {}
    for k, v in metadata.items():
        if isinstance(v, list):
            out[k] = v[:_DETAIL_LIST_ITEMS] + (
                [f"... {len(v) - _DETAIL_LIST_ITEMS} more"] if len(v) > _DETAIL_LIST_ITEMS else []
            )
        else:
            out[k] = v
    return out


# -- (a) asset checks ---------------------------------------------------------------------------------------


def check_alerts(
    instance: dg.DagsterInstance,
    check_keys: Sequence[dg.AssetCheckKey],
    cursor: Mapping[str, str],
    alerts: Notifier,
    policies: Policies,
    where: Mapping[dg.AssetKey, Subject],
) -> tuple[dict[str, str], list[str]]:
    """Fire for each new failing evaluation, resolve for each new passing one. Returns (cursor, actions)."""
    seen = dict(cursor)
    actions = []
    for key, state in dagster_internals.latest_check_states(instance, check_keys).items():
        name = key.to_user_string()
        if state.status == "in_progress" or seen.get(name) == state.token:
            continue
        seen[name] = state.token
        asset = key.asset_key.to_user_string()
        incident = f"check:{asset}:{key.name}"
        subject = where.get(key.asset_key, Subject())
        if state.status in ("failed", "execution_failed"):
            runbook = subject.runbook(policies.check(key.name).runbook) if key.name in KNOWN_CHECKS else ""  # type: ignore[arg-type]  # a CheckName
            severity: Severity
            if state.status == "failed":
                severity = ALERT_SEVERITY.get(state.severity or "ERROR", "error")
                title = f"Check {key.name} failed on {asset} ({state.severity})"
                summary = state.description or f"The asset check {key.name} on {asset} failed."
            else:
                severity = "error"
                title = f"Check {key.name} could not run on {asset}"
                summary = (
                    f"The check step raised an error or its run failed before it ran (run {state.run_id}). "
                    "Nothing was checked, so the data is unverified."
                )
                runbook = (
                    "Open the run in the Dagster UI and read the check step's error; re-execute the run."
                )
            out = alerts.fire(
                Alert(
                    key=incident,
                    severity=severity,
                    title=title,
                    summary=summary,
                    source_system=subject.system,
                    entity=subject.entity,
                    check_name=key.name,
                    runbook=runbook,
                    details={
                        "asset": asset,
                        "check": key.name,
                        "run_id": state.run_id,
                        "evaluated_at": state.at.isoformat(),
                        **_details({k: v for k, v in state.metadata.items() if k != "status"}),
                    },
                )
            )
            actions.append(f"{out.action} {incident}")
        elif state.status == "passed":
            out = alerts.resolve(incident, f"Check {key.name} on {asset} passes again (run {state.run_id}).")
            if out.action == "resolved":
                actions.append(f"resolved {incident}")
    return seen, actions


# -- (c) freshness ------------------------------------------------------------------------------------------

_LEVEL_RANK = {"PASS": 0, "WARN": 1, "FAIL": 2}


def freshness_alerts(
    instance: dg.DagsterInstance,
    windows: Mapping[dg.AssetKey, FreshnessWindow],
    alerts: Notifier,
    policies: Policies,
    where: Mapping[dg.AssetKey, Subject],
) -> list[str]:
    """WARN/FAIL from the FreshnessDaemon -> fire (each tick while it lasts: dedup + catch-up); PASS -> resolve.

    One incident per source entity, not per asset: when a source stops, its raw and canonical assets go stale
    together, and that is one problem (``freshness:<system>/<entity>:fail``). The worst state of its assets
    counts; it resolves once every evaluated asset of the entity is PASS again.
    """
    actions = []
    now = dagster_internals.now()
    groups: dict[str, list[dagster_internals.FreshnessView]] = {}
    for key, view in dagster_internals.freshness_states(instance, list(windows)).items():
        subject = where.get(key, Subject())
        name = f"{subject.system}/{subject.entity}" if subject.system else key.to_user_string()
        groups.setdefault(name, []).append(view)
    for name, views in sorted(groups.items()):
        graded = [v for v in views if v.state in _LEVEL_RANK]
        if not graded:
            continue  # never materialized (UNKNOWN): nothing to compare with yet
        worst = max(graded, key=lambda v: _LEVEL_RANK[v.state])
        subject = where.get(worst.key, Subject())
        if worst.state == "PASS":
            for level in ("fail", "warn"):
                out = alerts.resolve(
                    f"freshness:{name}:{level}", f"New data arrived for {name}; it is fresh again."
                )
                if out.action == "resolved":
                    actions.append(f"resolved freshness:{name}:{level}")
            continue
        stale = sorted(v.key.to_user_string() for v in graded if v.state == worst.state)
        window = windows[worst.key]
        limit = window.fail if worst.state == "FAIL" else (window.warn or window.fail)
        last = max(
            filter(None, (dagster_internals.last_materialization_time(instance, v.key) for v in graded)),
            default=None,
        )
        age = f"{human_age(now - last)} ago ({last.isoformat()})" if last else "never"
        level = worst.state.lower()
        out = alerts.fire(
            Alert(
                key=f"freshness:{name}:{level}",
                severity="error" if worst.state == "FAIL" else "warning",
                title=f"{name} is stale ({worst.state}): no new data for more than {format_duration(limit)}",
                summary=f"Nothing new arrived for {name}: last materialization {age}; the {level} window is "
                f"{format_duration(limit)}. The source may have stopped sending, or its export or sensor is not "
                f"running. Stale: {', '.join(stale)}.",
                source_system=subject.system,
                entity=subject.entity,
                check_name="freshness",
                runbook=subject.runbook(policies.runbooks.freshness),
                details={
                    "assets": stale,
                    "state": worst.state,
                    "state_since": worst.since.isoformat(),
                    "last_materialization": last.isoformat() if last else None,
                    "warn_window": format_duration(window.warn) if window.warn else None,
                    "fail_window": format_duration(window.fail),
                },
            )
        )
        if out.action != "deduplicated":
            actions.append(f"{out.action} freshness:{name}:{level}")
    return actions


# -- (b) runs -----------------------------------------------------------------------------------------------


def _run_subject(run: dg.DagsterRun) -> Subject:
    tag = (run.tags or {}).get(ENTITY_TAG)
    if tag and "." in tag:
        system, entity = tag.split(".", 1)
        return Subject(system, entity)
    return Subject()


def run_failure_alert(
    run: dg.DagsterRun, message: str, failed_steps: Iterable[str], alerts: Notifier, policies: Policies
) -> str:
    subject = _run_subject(run)
    steps = sorted(set(failed_steps))
    out = alerts.fire(
        Alert(
            key=f"run:{run.job_name}",
            severity="error",
            title=f"Run of {run.job_name} failed",
            summary=(message or "The run failed.")[:500]
            + (f" Failed step(s): {', '.join(steps)}." if steps else ""),
            source_system=subject.system,
            entity=subject.entity,
            runbook=subject.runbook(policies.runbooks.run_failure),
            details={"job": run.job_name, "run_id": run.run_id, "failed_steps": steps},
        )
    )
    return f"{out.action} run:{run.job_name}"


def run_recovered(run: dg.DagsterRun, alerts: Notifier) -> str:
    out = alerts.resolve(f"run:{run.job_name}", f"{run.job_name} succeeded again (run {run.run_id}).")
    return f"{out.action} run:{run.job_name}"


# -- (d) dead letters ---------------------------------------------------------------------------------------


def dead_letter_alerts(
    engine: sa.Engine, watermark: str | None, alerts: Notifier, policies: Policies
) -> tuple[str | None, list[str]]:
    """New (or re-failed) pending dead letters since ``watermark`` (max last_seen at the previous tick) ->
    fire per source entity; an open incident whose entity has nothing pending -> resolve."""
    c = dead_letters.c
    since = datetime.fromisoformat(watermark) if watermark else None
    actions = []
    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(c.last_seen))).scalar_one()
        grew = conn.execute(
            sa.select(c.source_system, c.entity, sa.func.count())
            .where(c.status == "pending", *([c.last_seen > since] if since else []))
            .group_by(c.source_system, c.entity)
        ).all()
        pending = {
            (s, e): int(n)
            for s, e, n in conn.execute(
                sa.select(c.source_system, c.entity, sa.func.count())
                .where(c.status == "pending")
                .group_by(c.source_system, c.entity)
            )
        }
        for system, entity, n_new in grew:
            by_check = conn.execute(
                sa.select(c.check_name, sa.func.count())
                .where(
                    c.status == "pending",
                    c.source_system == system,
                    c.entity == entity,
                    *([c.last_seen > since] if since else []),
                )
                .group_by(c.check_name)
                .order_by(sa.func.count().desc())
                .limit(10)
            ).all()
            oldest = conn.execute(
                sa.select(sa.func.min(c.first_seen)).where(
                    c.status == "pending", c.source_system == system, c.entity == entity
                )
            ).scalar_one()
            subject = Subject(system, entity)
            total = pending.get((system, entity), n_new)
            out = alerts.fire(
                Alert(
                    key=f"dead_letters:{system}/{entity}",
                    severity="warning",
                    title=f"{n_new} record(s) of {system}/{entity} quarantined",
                    summary=f"{n_new} new or re-failed dead letter(s) for {system}/{entity}; {total} pending in total. "
                    "They are not in the warehouse until replayed.",
                    source_system=system,
                    entity=entity,
                    check_name="dead_letters",
                    runbook=subject.runbook(policies.runbooks.dead_letter_growth),
                    details={
                        "new": int(n_new),
                        "pending": total,
                        "by_check": {str(k): int(v) for k, v in by_check},
                        "oldest_pending_first_seen": oldest.isoformat() if oldest else None,
                    },
                )
            )
            actions.append(f"{out.action} dead_letters:{system}/{entity}")
    for incident in list_incidents("open", engine=alerts.engine):
        if not incident.key.startswith("dead_letters:"):
            continue
        system, _, entity = incident.key.removeprefix("dead_letters:").partition("/")
        if not pending.get((system, entity)):
            out = alerts.resolve(
                incident.key,
                f"No dead letters of {system}/{entity} are pending any more (replayed or discarded).",
            )
            actions.append(f"{out.action} {incident.key}")
    new_mark = newest.isoformat() if isinstance(newest, datetime) else (str(newest) if newest else watermark)
    return new_mark, actions


# -- (e) connector HTTP errors ------------------------------------------------------------------------------


def http_error_alerts(engine: sa.Engine, alerts: Notifier, policies: Policies) -> list[str]:
    pol = policies.connector_http_errors
    actions = []
    now = dagster_internals.now()
    with engine.begin() as conn:
        health = http_error_health(conn, pol, now=now)
        prune(conn, pol, now=now)
    for h in health:
        key = f"http:{h.source_system}"
        subject = Subject(h.source_system)
        if h.sustained:
            out = alerts.fire(
                Alert(
                    key=key,
                    severity="error",
                    title=f"{h.source_system} API keeps failing: {h.errors} of {h.requests} calls were 429/5xx",
                    summary=f"In the last {format_duration(pol.window)}, {h.error_rate:.0%} of {h.source_system} calls were "
                    f"throttled (429) or failed (5xx/transport) across {h.error_minutes} minutes. Data from "
                    f"{h.source_system} is delayed or incomplete.",
                    source_system=h.source_system,
                    check_name="connector_http_errors",
                    runbook=subject.runbook(policies.runbooks.connector_http_errors),
                    details=h.as_dict(),
                )
            )
            if out.action != "deduplicated":
                actions.append(f"{out.action} {key}")
        elif h.cleared:
            out = alerts.resolve(
                key,
                f"{h.source_system} API calls succeed again ({h.error_rate:.0%} errors "
                f"in the last {format_duration(pol.window)}).",
            )
            if out.action == "resolved":
                actions.append(f"resolved {key}")
    return actions


# -- (f) failed partitions of the API pulls -----------------------------------------------------------------


def partition_failure_alerts(
    instance: dg.DagsterInstance, alerts: Notifier, policies: Policies, *, now: datetime | None = None
) -> list[str]:
    """A partitioned pull with days whose latest run failed -> fire per source entity, naming the days and the
    backfill command that repairs them; no failed day left (a backfill or the schedule re-ran them) -> resolve."""
    actions = []
    for h in partition_health(instance, now=now, policies=policies):
        key = f"partitions:{h.system}/{entity_slug(h.entity)}"
        if h.failed:
            days = ", ".join(a if a == b else f"{a}..{b}" for a, b in day_ranges(h.failed))
            out = alerts.fire(
                Alert(
                    key=key,
                    severity="error",
                    title=f"{len(h.failed)} day(s) of {h.system}/{h.entity} failed to pull",
                    summary=f"The latest runs of {h.asset_key.to_user_string()} failed for {days}: those days "
                    "are missing from the warehouse until they are re-run.",
                    source_system=h.system,
                    entity=h.entity,
                    check_name="partitions",
                    runbook=f"Fix the cause (see the failed runs), then run `{h.command()}` or, in the UI, "
                    "the asset → Materialize → the failed days → Launch backfill.",
                    details={"failed": list(h.failed[:_DETAIL_LIST_ITEMS]), "failed_days": len(h.failed)},
                )
            )
            if out.action != "deduplicated":
                actions.append(f"{out.action} {key}")
        else:
            out = alerts.resolve(key, f"No failed day of {h.system}/{h.entity} is left.")
            if out.action == "resolved":
                actions.append(f"resolved {key}")
    return actions
