"""Pipeline gauges in the Prometheus text format, served next to the receiver's own metrics on ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import sqlalchemy as sa

from integration_assets.warehouse.schema import dead_letters, loads


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value:g}" if inner else f"{name} {value:g}"


def _age(now: datetime, ts: datetime | None) -> float | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # SQLite gives naive UTC
        ts = ts.replace(tzinfo=UTC)
    return max((now - ts).total_seconds(), 0.0)


def pipeline_metrics(engine: sa.Engine, now: datetime | None = None) -> str:
    """Dead letters pending (and their oldest age), last successful load age and rows per outcome,
    per source entity, from the warehouse. A failing query reports ``integration_pipeline_metrics_up 0``."""
    now = now or datetime.now(UTC)
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, rows: Iterable[str]) -> None:
        out.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *rows])

    try:
        with engine.connect() as conn:
            c = dead_letters.c
            pending = conn.execute(
                sa.select(c.source_system, c.entity, sa.func.count(), sa.func.min(c.first_seen))
                .where(c.status == "pending")
                .group_by(c.source_system, c.entity)
            ).all()
            lc = loads.c
            last_ok = conn.execute(
                sa.select(lc.source_system, lc.entity, sa.func.max(lc.finished_at))
                .where(lc.status == "succeeded")
                .group_by(lc.source_system, lc.entity)
            ).all()
            totals = conn.execute(
                sa.select(
                    lc.source_system,
                    lc.entity,
                    sa.func.sum(lc.rows_read),
                    sa.func.sum(lc.rows_inserted),
                    sa.func.sum(lc.rows_updated),
                    sa.func.sum(lc.rows_duplicate),
                    sa.func.sum(lc.rows_quarantined),
                ).group_by(lc.source_system, lc.entity)
            ).all()
    except sa.exc.SQLAlchemyError:
        return "# TYPE integration_pipeline_metrics_up gauge\nintegration_pipeline_metrics_up 0\n"

    family(
        "integration_pipeline_metrics_up",
        "gauge",
        "1 when the warehouse answered this scrape.",
        ["integration_pipeline_metrics_up 1"],
    )
    family(
        "integration_dead_letters_pending",
        "gauge",
        "Dead letters waiting for review or replay.",
        [
            _line("integration_dead_letters_pending", {"source_system": s, "entity": e}, n)
            for s, e, n, _ in pending
        ],
    )
    family(
        "integration_dead_letters_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest pending dead letter.",
        [
            _line("integration_dead_letters_oldest_pending_age_seconds", {"source_system": s, "entity": e}, a)
            for s, e, _, first in pending
            if (a := _age(now, first)) is not None
        ],
    )
    family(
        "integration_last_successful_load_age_seconds",
        "gauge",
        "Seconds since the last successful load.",
        [
            _line("integration_last_successful_load_age_seconds", {"source_system": s, "entity": e}, a)
            for s, e, ts in last_ok
            if (a := _age(now, ts)) is not None
        ],
    )
    rows = []
    for s, e, read, ins, upd, dup, quar in totals:
        for outcome, v in (
            ("read", read),
            ("inserted", ins),
            ("updated", upd),
            ("duplicate", dup),
            ("quarantined", quar),
        ):
            rows.append(
                _line(
                    "integration_rows_total",
                    {"source_system": s, "entity": e, "outcome": outcome},
                    float(v or 0),
                )
            )
    family("integration_rows_total", "counter", "Rows per outcome over every load in the ledger.", rows)
    return "\n".join(out) + "\n"
