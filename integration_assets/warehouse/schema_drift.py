"""The ``schema_drift`` ledger: what a load found that its contract did not expect (one row per finding)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from integration_assets.warehouse.ledger import utcnow
from integration_assets.warehouse.schema import schema_drift


def record_drift(
    conn: sa.Connection,
    load_id: str,
    system: str,
    entity: str,
    contract_version: str | None,
    findings: Sequence[dict[str, Any]],
) -> None:
    if not findings:
        return
    now = utcnow()
    conn.execute(
        schema_drift.insert(),
        [
            {
                "load_id": load_id,
                "source_system": system,
                "entity": entity,
                "contract_version": contract_version,
                "kind": f["kind"],
                "column_name": f.get("column"),
                "rows_affected": int(f.get("rows", 0)),
                "sample": json.dumps(f.get("sample", [])),
                "detected_at": now,
            }
            for f in findings
        ],
    )
