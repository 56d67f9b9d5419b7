"""The outbound chain's tables (docs/ARCHITECTURE.md, "The outbound flow"): the transactional outbox, the
ledger of every outbound write, and one row per chain (a won deal's way to an order, a label and back).

Owners: ``outbox`` is written by ``warehouse/outbox.py`` only (the capture in the merge transaction and the
relay); ``outbound_ledger`` and ``outbound_chains`` by ``outbound/ledger.py`` only. Payloads and details hold
ids, never personal data.
"""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.warehouse.schema.base import MONEY, TS, key_string, metadata

# One row per message a warehouse change must cause elsewhere, inserted in the transaction of that change.
# ``id`` is the order of insertion (the relay publishes in id order); ``key`` makes an insert idempotent:
# the same deal merged as won twice inserts one row.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),  # SQLite autoincrements INTEGER keys only
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("key", key_string(255), nullable=False, unique=True),
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("step", sa.String(32), nullable=False),
    sa.Column("chain_id", key_string(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # JSON, ids only
    sa.Column("created_at", TS, nullable=False),
    sa.Column("sent_at", TS),  # null until the relay published it
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_outbox_sent_at_id", "sent_at", "id"),
)

# One row per outbound write (step, chain[, sub-write]): the deterministic key the retry looks up.
# status: started | done | found | skipped | dead_lettered | compensated
outbound_ledger = sa.Table(
    "outbound_ledger",
    metadata,
    sa.Column("key", key_string(255), primary_key=True),
    sa.Column("step", sa.String(32), nullable=False),
    sa.Column("chain_id", key_string(64), nullable=False),
    sa.Column("target_system", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("target_id", sa.String(128)),
    sa.Column("target_ref", sa.String(255)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("contract_version", sa.String(128)),
    sa.Column("first_attempt_at", TS),
    sa.Column("last_attempt_at", TS),
    sa.Column("done_at", TS),
    sa.Column("latency_ms", sa.Integer),  # first attempt -> done
    sa.Column("outcome_detail", sa.Text),  # JSON, ids only
    sa.Index("ix_outbound_ledger_chain_id", "chain_id"),
    sa.Index("ix_outbound_ledger_step_status", "step", "status"),
)

# One row per chain (chain_id = the HubSpot deal id as text).
# status: won | ordered | labelled | written_back | cancelled | refunded | review | dead_lettered
outbound_chains = sa.Table(
    "outbound_chains",
    metadata,
    sa.Column("chain_id", key_string(64), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("deal_id", sa.String(64), nullable=False),
    sa.Column("won_at", TS),
    sa.Column("amount_at_order", MONEY),
    sa.Column("currency", sa.String(3)),
    sa.Column("partner_id", sa.String(64)),
    sa.Column("order_id", sa.String(64)),
    sa.Column("order_name", sa.String(64)),
    sa.Column("picking_ids", sa.Text),  # JSON list of ints
    sa.Column("shipment_id", sa.String(64)),
    sa.Column("tracking_code", sa.String(64)),
    sa.Column("label_url", sa.String(1024)),
    sa.Column("shipment_status", sa.String(32)),
    sa.Column("shipment_status_at", TS),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("ix_outbound_chains_order_id", "order_id"),
    sa.Index("ix_outbound_chains_tracking_code", "tracking_code"),
    sa.Index("ix_outbound_chains_status", "status"),
)
