"""Checks over the loads ledger, the dead letters and the drift findings: is the source still sending what
it used to, and is anything piling up in quarantine?

Each function takes a SQLAlchemy connection, the canonical table and the policies, and returns a
:class:`CheckOutcome`. A table fed by several source entities is checked per entity and combined.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.contracts.spec import Contract, contracts_for
from integration_assets.policies import Policies, format_duration
from integration_assets.quality.outcome import CheckOutcome, aware, combine, entities_for_table, utcnow
from integration_assets.warehouse.schema import dead_letters, loads, schema_drift

NO_DELETE = (
    "A load never deletes or replaces rows (the merge only inserts and updates), so existing data is intact."
)
# Shown in the UI next to every volume result.
VOLUME_DESCRIPTION = (
    "Rows read by the latest load vs the median of the previous successful loads of this source entity. "
    + NO_DELETE
)


def _per_entity(table: str, fn: Any, *args: Any, **kwargs: Any) -> CheckOutcome:
    parts = {f"{s}/{e}": fn(*args, system=s, entity=e, **kwargs) for s, e in entities_for_table(table)}
    if not parts:
        return CheckOutcome.skip(f"no source entity loads {table} (no contract targets it)")
    return combine(parts)


# -- volume ---------------------------------------------------------------------------------------------------


def volume(conn: sa.Connection, table: str, policies: Policies) -> CheckOutcome:
    """Zero rows, a drop or a spike in the latest load compared with the trailing history."""
    return _per_entity(table, _volume, conn, policies)


def _volume(conn: sa.Connection, policies: Policies, *, system: str, entity: str) -> CheckOutcome:
    pol = policies.for_entity(system, entity).volume
    check = policies.check("volume")
    counted = sa.or_(
        loads.c.status == "succeeded",
        sa.and_(loads.c.status == "rejected", loads.c.error.startswith("no_data_rows")),
    )
    rows = conn.execute(
        sa.select(loads.c.load_id, loads.c.file_name, loads.c.status, loads.c.rows_read, loads.c.started_at)
        .where(
            loads.c.source_system == system, loads.c.entity == entity, loads.c.kind.in_(pol.kinds), counted
        )
        .order_by(loads.c.started_at.desc(), loads.c.load_id.desc())
        .limit(pol.history + 1)
    ).all()
    if not rows:
        return CheckOutcome.ok("No loads recorded yet for this source entity.", history_loads=0)
    latest, earlier = rows[0], [r for r in rows[1:] if r.status == "succeeded"]
    latest_rows = int(latest.rows_read or 0) if latest.status == "succeeded" else 0
    meta: dict[str, Any] = {
        "latest_load_id": latest.load_id,
        "latest_file": latest.file_name or "",
        "latest_rows": latest_rows,
        "history_loads": len(earlier),
        "drop_below": pol.drop_below,
        "spike_above": pol.spike_above,
    }
    if latest_rows == 0:
        return CheckOutcome.fail(
            check.zero_rows_severity or check.severity,
            f"The latest {system}/{entity} load ({latest.file_name or latest.load_id}) had zero rows: the source "
            f"sent an empty export. Nothing was loaded. {NO_DELETE}",
            **meta,
        )
    if len(earlier) < pol.min_history:
        return CheckOutcome.ok(
            f"{latest_rows} rows; only {len(earlier)} earlier load(s), drop/spike rules need {pol.min_history}.",
            **meta,
        )
    median = float(statistics.median(int(r.rows_read or 0) for r in earlier))
    ratio = latest_rows / median if median else float("inf")
    meta |= {"median_rows": median, "ratio": round(ratio, 4)}
    if ratio < pol.drop_below:
        return CheckOutcome.fail(
            check.severity,
            f"The latest {system}/{entity} load read {latest_rows} rows, {ratio:.0%} of the median {median:g} of the "
            f"last {len(earlier)} loads (threshold {pol.drop_below:.0%}): a partial or filtered export? {NO_DELETE}",
            **meta,
        )
    if ratio > pol.spike_above:
        return CheckOutcome.fail(
            check.severity,
            f"The latest {system}/{entity} load read {latest_rows} rows, {ratio:.1f}x the median {median:g} of the "
            f"last {len(earlier)} loads (threshold {pol.spike_above:g}x): a full re-export or duplicated data?",
            **meta,
        )
    return CheckOutcome.ok(f"{latest_rows} rows, {ratio:.0%} of the median {median:g}.", **meta)


# -- quarantine rate ----------------------------------------------------------------------------------------


def quarantine_rate(conn: sa.Connection, table: str, policies: Policies) -> CheckOutcome:
    """Share of rows quarantined by the latest load(s)."""
    return _per_entity(table, _quarantine_rate, conn, policies)


def _quarantine_rate(conn: sa.Connection, policies: Policies, *, system: str, entity: str) -> CheckOutcome:
    pol = policies.for_entity(system, entity).quarantine
    rows = conn.execute(
        sa.select(loads.c.load_id, loads.c.rows_read, loads.c.rows_quarantined)
        .where(
            loads.c.source_system == system,
            loads.c.entity == entity,
            loads.c.status == "succeeded",
            loads.c.kind != "replay",
        )
        .order_by(loads.c.started_at.desc(), loads.c.load_id.desc())
        .limit(pol.latest_loads)
    ).all()
    if not rows:
        return CheckOutcome.ok("No successful loads yet.", loads=[])
    read = sum(int(r.rows_read or 0) for r in rows)
    quarantined = sum(int(r.rows_quarantined or 0) for r in rows)
    rate = quarantined / read if read else 0.0
    ids = [r.load_id for r in rows]
    reasons = conn.execute(
        sa.select(dead_letters.c.check_name, dead_letters.c.column_name, sa.func.count())
        .where(dead_letters.c.load_id.in_(ids))
        .group_by(dead_letters.c.check_name, dead_letters.c.column_name)
        .order_by(sa.func.count().desc())
        .limit(10)
    ).all()
    meta = {
        "loads": ids,
        "rows_read": read,
        "rows_quarantined": quarantined,
        "rate": round(rate, 6),
        "warn_rate": pol.warn_rate,
        "error_rate": pol.error_rate,
        "top_reasons": [{"check": c, "column": col, "rows": int(n)} for c, col, n in reasons],
    }
    summary = f"{quarantined} of {read} rows ({rate:.2%}) of the latest {len(ids)} {system}/{entity} load(s) quarantined"
    if quarantined and rate >= pol.error_rate:
        return CheckOutcome.fail("ERROR", f"{summary} (error threshold {pol.error_rate:.0%}).", **meta)
    if quarantined and rate >= pol.warn_rate:
        return CheckOutcome.fail("WARN", f"{summary} (warn threshold {pol.warn_rate:.0%}).", **meta)
    return CheckOutcome.ok(f"{summary}.", **meta)


# -- dead-letter backlog ------------------------------------------------------------------------------------


def dead_letter_backlog(
    conn: sa.Connection,
    table: str,
    policies: Policies,
    *,
    since: datetime | None = None,
    now: datetime | None = None,
) -> CheckOutcome:
    """Pending dead letters: how many, how old the oldest, how many arrived since ``since`` (the last check)."""
    return _per_entity(table, _backlog, conn, policies, since=since, now=now or utcnow())


def _backlog(
    conn: sa.Connection,
    policies: Policies,
    *,
    system: str,
    entity: str,
    since: datetime | None,
    now: datetime,
) -> CheckOutcome:
    pol = policies.for_entity(system, entity).dead_letters
    c = dead_letters.c
    pending = sa.and_(c.source_system == system, c.entity == entity, c.status == "pending")
    count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(c.first_seen)).where(pending)).one()
    count, oldest = int(count or 0), aware(oldest)
    window_start = aware(since) or now - timedelta(days=1)
    new = int(
        conn.execute(
            sa.select(sa.func.count()).where(
                c.source_system == system, c.entity == entity, c.first_seen > window_start
            )
        ).scalar_one()
    )
    by_check = conn.execute(
        sa.select(c.check_name, sa.func.count())
        .where(pending)
        .group_by(c.check_name)
        .order_by(sa.func.count().desc())
        .limit(10)
    ).all()
    age = (now - oldest) if oldest else None
    meta: dict[str, Any] = {
        "pending": count,
        "oldest_pending_first_seen": oldest.isoformat() if oldest else None,
        "oldest_pending_age_hours": round(age.total_seconds() / 3600, 2) if age else None,
        "new_since_last_check": new,
        "counted_since": window_start.isoformat(),
        "pending_by_check": {str(k): int(n) for k, n in by_check},
        "pending_warn": pol.pending_warn,
        "pending_error": pol.pending_error,
        "oldest_warn": format_duration(pol.oldest_warn),
        "oldest_error": format_duration(pol.oldest_error),
    }
    age_text = f", oldest {format_duration(timedelta(seconds=int(age.total_seconds())))} old" if age else ""
    summary = (
        f"{count} pending dead letter(s) for {system}/{entity}{age_text}, {new} new since the last check"
    )
    if count > pol.pending_error or (age is not None and age > pol.oldest_error):
        return CheckOutcome.fail(
            "ERROR",
            f"{summary}: over the error threshold "
            f"({pol.pending_error} pending / {format_duration(pol.oldest_error)}).",
            **meta,
        )
    if count > pol.pending_warn or (age is not None and age > pol.oldest_warn):
        return CheckOutcome.fail(
            "WARN",
            f"{summary}: over the warn threshold "
            f"({pol.pending_warn} pending / {format_duration(pol.oldest_warn)}).",
            **meta,
        )
    return CheckOutcome.ok(f"{summary}.", **meta)


# -- drift --------------------------------------------------------------------------------------------------


def current_contracts(system: str, entity: str) -> list[Contract]:
    """The newest version of every variant (csv export, api, ...) of one source entity."""
    newest: dict[str, Contract] = {}
    for c in contracts_for(system, entity):
        if c.variant not in newest or c.version > newest[c.variant].version:
            newest[c.variant] = c
    return list(newest.values())


def handled_now(contract: Contract, kind: str, column: str | None, sample: list[str]) -> bool:
    """True when the current contract already absorbs a recorded drift finding (edited since it was seen).

    New columns are handled once mapped or ignored; missing columns once the contract stops expecting them;
    unknown dropdown values once every sampled value is in the enum's values. Type and format changes can
    only be re-judged by a load, so they stay until a new contract version.
    """
    if column is None:
        return False
    known = set(contract.fields) | set(contract.ignored)
    if kind == "new_column":
        return column in known or any(column.startswith(k + ".") for k in known)
    if kind == "missing_column":
        return column not in contract.fields
    if kind == "unknown_value":
        spec = contract.fields.get(column)
        if spec is None or spec.type != "enum":
            return True
        if not sample or any(s.startswith("<withheld") for s in sample):
            return False
        values = {k.strip().lower() if spec.case_insensitive else k.strip() for k in spec.values}
        return all((s.strip().lower() if spec.case_insensitive else s.strip()) in values for s in sample)
    return False


def drift(conn: sa.Connection, table: str, policies: Policies) -> CheckOutcome:
    """New/missing columns and unknown dropdown values seen since the last contract change."""
    return _per_entity(table, _drift, conn, policies)


def _drift(conn: sa.Connection, policies: Policies, *, system: str, entity: str) -> CheckOutcome:
    check = policies.check("drift")
    current = {c.id: c for c in current_contracts(system, entity)}
    if not current:
        return CheckOutcome.skip(f"no contract for {system}/{entity}")
    d = schema_drift.c
    rows = conn.execute(
        sa.select(
            d.contract_version, d.kind, d.column_name, d.rows_affected, d.sample, d.detected_at, d.load_id
        )
        .where(d.source_system == system, d.entity == entity, d.contract_version.in_(list(current)))
        .order_by(d.detected_at)
    ).all()
    open_: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    resolved = 0
    for r in rows:
        sample = json.loads(r.sample) if r.sample else []
        if handled_now(current[r.contract_version], r.kind, r.column_name, sample):
            resolved += 1
            continue
        f = open_.setdefault(
            (r.contract_version, r.kind, r.column_name),
            {
                "contract": r.contract_version,
                "kind": r.kind,
                "column": r.column_name,
                "rows": 0,
                "loads": 0,
                "sample": [],
                "last_seen": None,
            },
        )
        f["rows"] += int(r.rows_affected or 0)
        f["loads"] += 1
        f["sample"] = list(dict.fromkeys([*f["sample"], *sample]))[:10]
        f["last_seen"] = aware(r.detected_at).isoformat() if r.detected_at else None
    findings = list(open_.values())
    kinds = Counter(f["kind"] for f in findings)
    meta = {
        "contracts": sorted(current),
        "open_findings": len(findings),
        "resolved_by_contract_edit": resolved,
        "by_kind": dict(kinds),
        "findings": findings[:50],
    }
    if findings:
        what = ", ".join(f"{f['kind']} {f['column']}" for f in findings[:5]) + (
            " ..." if len(findings) > 5 else ""
        )
        return CheckOutcome.fail(
            check.severity, f"{system}/{entity} drifted from {', '.join(sorted(current))}: {what}.", **meta
        )
    return CheckOutcome.ok(f"No open drift against {', '.join(sorted(current))}.", **meta)
