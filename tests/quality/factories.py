"""Rows for the quality tests, written straight into a migrated warehouse (SQLite or PostgreSQL)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters, loads, schema_drift

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_seq = itertools.count(1)

SYSTEM_OF = {
    "contacts": "hubspot",
    "companies": "hubspot",
    "deals": "hubspot",
    "customers": "odoo",
    "products": "odoo",
    "sales_orders": "odoo",
    "sales_order_lines": "odoo",
    "invoices": "odoo",
}
ENTITY_OF = {
    "contacts": "contacts",
    "companies": "companies",
    "deals": "deals",
    "customers": "res.partner",
    "products": "product.product",
    "sales_orders": "sale.order",
    "sales_order_lines": "sale.order.line",
    "invoices": "account.move",
}


class Warehouse:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)

    def rows(self, table: str, *rows: dict[str, Any]) -> None:
        """Canonical rows with lineage filled in; ``source_id`` is required."""
        t = CANONICAL_TABLES[table]
        full = [
            {
                "source_system": SYSTEM_OF[table],
                "source_updated_at": T0,
                "mapping_version": f"test.{table}@v1",
                "load_id": "ld_test",
                "row_hash": next(_seq),
                **r,
            }
            for r in rows
        ]
        with self.engine.begin() as conn:
            for row in full:  # rows may name different columns
                conn.execute(t.insert().values(**row))

    def load(
        self,
        table: str,
        rows_read: int,
        *,
        status: str = "succeeded",
        quarantined: int = 0,
        at: datetime | None = None,
        kind: str = "file",
        error: str | None = None,
        system: str | None = None,
        entity: str | None = None,
    ) -> str:
        load_id = f"ld_{next(_seq):06d}"
        started = at or T0 + timedelta(minutes=next(_seq))
        with self.engine.begin() as conn:
            conn.execute(
                loads.insert().values(
                    load_id=load_id,
                    source_system=system or SYSTEM_OF[table],
                    entity=entity or ENTITY_OF[table],
                    target_table=table,
                    kind=kind,
                    file_name=f"{load_id}.csv",
                    status=status,
                    rows_read=rows_read,
                    rows_inserted=max(rows_read - quarantined, 0),
                    rows_quarantined=quarantined,
                    error=error,
                    started_at=started,
                    finished_at=started + timedelta(seconds=3),
                )
            )
        return load_id

    def dead_letter(
        self,
        table: str,
        *,
        first_seen: datetime,
        status: str = "pending",
        load_id: str | None = None,
        check: str = "unknown_value",
        column: str | None = "Lifecycle Stage",
    ) -> None:
        n = next(_seq)
        with self.engine.begin() as conn:
            conn.execute(
                dead_letters.insert().values(
                    fingerprint=f"fp{n}",
                    source_system=SYSTEM_OF[table],
                    entity=ENTITY_OF[table],
                    natural_key=str(n),
                    stage="map",
                    check_name=check,
                    reason="test",
                    column_name=column,
                    raw_record="{}",
                    load_id=load_id,
                    status=status,
                    first_seen=first_seen,
                    last_seen=first_seen,
                )
            )

    def drift(
        self, table: str, contract: str, kind: str, column: str, sample: list[str], rows: int = 1
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                schema_drift.insert().values(
                    load_id=f"ld_{next(_seq)}",
                    source_system=SYSTEM_OF[table],
                    entity=ENTITY_OF[table],
                    contract_version=contract,
                    kind=kind,
                    column_name=column,
                    rows_affected=rows,
                    sample=json.dumps(sample),
                    detected_at=T0,
                )
            )

    def execute(self, sql: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql))
