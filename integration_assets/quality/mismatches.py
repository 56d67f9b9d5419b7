"""What a reconciliation check found: mismatches, written to ``reconciliation_mismatches`` and summed up in
the check's outcome (the first ``LISTED`` of them in its metadata)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from integration_assets.policies import Policies
from integration_assets.quality.outcome import CheckOutcome, aware, utcnow
from integration_assets.warehouse.schema import reconciliation_mismatches

LISTED = 50  # mismatches listed in check metadata; all of them go to the table


@dataclass(frozen=True)
class Mismatch:
    key: str
    side: str  # hubspot | odoo | stripe | both
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "side": self.side, **self.detail}


def replace_mismatches(
    conn: sa.Connection,
    check_name: str,
    mismatches: list[Mismatch],
    *,
    run_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """The check's rows in ``reconciliation_mismatches`` become exactly ``mismatches``."""
    t = reconciliation_mismatches
    conn.execute(t.delete().where(t.c.check_name == check_name))
    if mismatches:
        at = now or utcnow()
        conn.execute(
            t.insert(),
            [
                {
                    "check_name": check_name,
                    "key": m.key[:255],
                    "side": m.side,
                    "run_id": run_id,
                    "detected_at": at,
                    "detail": json.dumps(m.detail, default=str, sort_keys=True),
                }
                for m in mismatches
            ],
        )


def mismatch_outcome(
    check_name: str, policies: Policies, mismatches: list[Mismatch], ok_text: str, fail_text: str, **meta: Any
) -> CheckOutcome:
    sides: dict[str, int] = defaultdict(int)
    for m in mismatches:
        sides[m.side] += 1
    metadata = {
        "mismatches": len(mismatches),
        "by_side": dict(sides),
        "listed": [m.as_dict() for m in mismatches[:LISTED]],
        "table": f"reconciliation_mismatches WHERE check_name = '{check_name}'",
        **meta,
    }
    if mismatches:
        return CheckOutcome.fail(policies.check(check_name).severity, fail_text, **metadata)  # type: ignore[arg-type]
    return CheckOutcome.ok(ok_text, **metadata)


def money_text(v: Any) -> str | None:
    return None if v is None else str(Decimal(str(v)).quantize(Decimal("0.01")))


def when_text(v: Any) -> str | None:
    return aware(v).isoformat() if isinstance(v, datetime) else (v.isoformat() if isinstance(v, date) else v)
