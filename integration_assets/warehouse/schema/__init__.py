"""Every warehouse table (SQLAlchemy Core), declared on one metadata, one module per concern.

Alembic migrations create the tables and autogenerate compares this metadata with them; code queries the
tables. Importing this package declares all of them, so ``metadata`` is always complete.
"""

from __future__ import annotations

from integration_assets.warehouse.schema.alerts import KEY_LENGTH, alert_deliveries, alert_incidents
from integration_assets.warehouse.schema.api_budget import api_budget
from integration_assets.warehouse.schema.base import MONEY, TS, key_string, metadata
from integration_assets.warehouse.schema.canonical import (
    CANONICAL_TABLES,
    LATE_COLUMNS,
    LINEAGE_COLUMNS,
    companies,
    contacts,
    customers,
    deals,
    invoices,
    payments,
    products,
    sales_order_lines,
    sales_orders,
    shipment_events,
)
from integration_assets.warehouse.schema.dead_letters import dead_letter_actions, dead_letters
from integration_assets.warehouse.schema.events import processed_events
from integration_assets.warehouse.schema.ledgers import loads, schema_drift
from integration_assets.warehouse.schema.outbound import outbound_chains, outbound_ledger, outbox
from integration_assets.warehouse.schema.privacy import privacy_erasures
from integration_assets.warehouse.schema.quality import connector_http_stats, reconciliation_mismatches
from integration_assets.warehouse.schema.queue import event_queue

__all__ = [
    "CANONICAL_TABLES",
    "KEY_LENGTH",
    "LATE_COLUMNS",
    "LINEAGE_COLUMNS",
    "MONEY",
    "TS",
    "alert_deliveries",
    "alert_incidents",
    "api_budget",
    "companies",
    "connector_http_stats",
    "contacts",
    "customers",
    "dead_letter_actions",
    "dead_letters",
    "deals",
    "event_queue",
    "invoices",
    "key_string",
    "loads",
    "metadata",
    "outbound_chains",
    "outbound_ledger",
    "outbox",
    "payments",
    "privacy_erasures",
    "processed_events",
    "products",
    "reconciliation_mismatches",
    "sales_order_lines",
    "sales_orders",
    "schema_drift",
    "shipment_events",
]
