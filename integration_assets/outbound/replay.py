"""Replay outbound dead letters: run the dead-lettered step again for its message (docs/ARCHITECTURE.md,
"The outbound flow").

A dead letter of stage ``outbound`` holds the outbox message (ids only) and its ledger key. Once the cause is
fixed (a contract edit, a product created in Odoo, an address corrected), a replay resets the write's attempt
count and runs the step once, through the runner's own rules: the step looks the target up before it creates
(the ledger row exists), the ledger, the chain and the follow-up outbox rows commit together. Success marks
the dead letter ``replayed``; a new permanent failure leaves it ``pending`` with the new reason (the runner
wrote it); a transient one leaves it as it was, to replay again later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from integration_assets.dead_letters import queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.outbound import ledger, runner
from integration_assets.outbound.steps.base import OutboxMessage
from integration_assets.outbound.targets import Targets
from integration_assets.policies import OutboundPolicy
from integration_assets.warehouse.db import begin_write

STAGE = "outbound"


@dataclass
class OutboundReplay:
    selected: int = 0
    replayed: list[int] = field(default_factory=list)
    still_failing: dict[int, str] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    previews: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "replayed": self.replayed,
            "still_failing": self.still_failing,
            "skipped": self.skipped,
            "dry_run": self.dry_run,
        }


def _message(row: dict[str, Any]) -> tuple[OutboxMessage, str]:
    msg = OutboxMessage.from_json(row["raw_record"] or "")
    headers = json.loads(row["headers"] or "{}")
    key = headers.get("ledger_key") if isinstance(headers, dict) else None
    return msg, str(key or "")


def replay_outbound(
    engine: sa.Engine,
    flt: Filter,
    *,
    who: str,
    dry_run: bool = False,
    run_id: str | None = None,
    targets: Targets | None = None,
    policy: OutboundPolicy | None = None,
) -> OutboundReplay:
    """Run the step of each pending outbound dead letter ``flt`` selects (stage forced to ``outbound``)."""
    out = OutboundReplay(dry_run=dry_run)
    with engine.connect() as conn:
        rows = queries.select(conn, Filter(**{**flt.__dict__, "stage": STAGE}))
    out.selected = len(rows)
    targets = targets or Targets()
    for row in rows:
        dl_id = int(row["id"])
        if row["status"] != "pending":
            out.skipped[dl_id] = f"status is {row['status']}"
            continue
        try:
            msg, key = _message(row)
            runner.get_step(msg.step)
        except (ValueError, KeyError, TypeError) as exc:
            out.skipped[dl_id] = f"not a replayable outbound message: {exc}"
            continue
        if dry_run:
            report = runner.run_message(engine, msg, targets=targets, policy=policy, dry_run=True)
            out.previews.extend(report.previews)
            if report.errors:
                out.still_failing[dl_id] = str(report.errors[-1].get("reason"))
            else:
                out.replayed.append(dl_id)
            with begin_write(engine) as conn:
                store.audit(conn, [dl_id], "dry_run", who, "would_load", run_id=run_id)
            continue
        if key:
            with begin_write(engine) as conn:
                ledger.reset_attempts(conn, key)
        report = runner.run_message(engine, msg, targets=targets, policy=policy)
        failed = report.dead_lettered + report.flagged > 0 or any(
            e.get("kind") == "transient" for e in report.errors
        )
        with begin_write(engine) as conn:
            if failed:
                reason = str(report.errors[-1].get("reason")) if report.errors else "failed again"
                out.still_failing[dl_id] = reason
                store.audit(conn, [dl_id], "replay", who, "still_failing", detail=reason[:500], run_id=run_id)
            else:
                out.replayed.append(dl_id)
                outcome = "duplicate" if report.duplicates else "done"
                store.mark_replayed(
                    conn, [dl_id], f"outbound step {msg.step} ran again: {outcome}", only_pending=True
                )
                store.audit(conn, [dl_id], "replay", who, "replayed", detail=outcome, run_id=run_id)
    return out
