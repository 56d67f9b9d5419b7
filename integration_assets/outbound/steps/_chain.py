"""What every step reads from the warehouse: the chain row, the deal and its company, and the keys a chain
generation uses in the target systems (docs/ARCHITECTURE.md, "The outbound flow").

Reads only: ``outbound_chains`` and ``outbound_ledger`` are written by ``outbound/ledger.py`` (through the
runner, from a step's ``StepResult``), the canonical tables by the merge.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from integration_assets.errors import TerminalError
from integration_assets.outbound import ledger
from integration_assets.outbound.errors import StepRejected
from integration_assets.outbound.steps.base import OutboxMessage, Step, StepContext, ledger_sub
from integration_assets.warehouse.schema import companies, deals

HUBSPOT = "hubspot"


def aware(ts: datetime | None) -> datetime | None:
    """SQLite hands back naive UTC datetimes; Postgres aware ones. Compare them as aware."""
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def generation_of(msg_payload: Mapping[str, Any], chain: Mapping[str, Any] | None) -> int:
    """The chain generation a message belongs to (1 unless policy ``rewin: new_order`` started another)."""
    raw = msg_payload.get("generation")
    if raw is None and chain is not None:
        raw = chain.get("generation")
    return int(raw or 1)


def suffix(generation: int) -> str:
    """Keys of the first generation carry no suffix (``deal.won:<id>``); later ones ``:<n>``."""
    return "" if generation <= 1 else f":{generation}"


def order_ref(deal_id: str, generation: int) -> str:
    """The sale order's ``client_order_ref`` and the EasyPost shipment ``reference`` of a chain generation:
    the key the retry looks up in the target (docs/SOURCES.md §2.6, §4.5)."""
    return f"hubspot-deal:{deal_id}{suffix(generation)}"


def partner_ref(company_id: str) -> str:
    """The ``ref`` of a partner this integration created for a HubSpot company (looked up before a create)."""
    return f"hubspot-company:{company_id}"


def own_key(ctx: StepContext, step: Step, msg: OutboxMessage) -> str:
    """The ledger key of ``msg``'s write by ``step`` (the one the runner started before calling the step)."""
    return ctx.ledger_key(step.name, msg.chain_id, ledger_sub(step, msg))


def retrying(ctx: StepContext, step: Step, msg: OutboxMessage, attempt: int) -> bool:
    """Whether an earlier attempt may have reached the target: then look up before creating."""
    return attempt > 1 or ctx.previously_started(own_key(ctx, step, msg))


def ledger_status(ctx: StepContext, key: str) -> str | None:
    with ctx.engine.connect() as conn:
        row = ledger.get(conn, key)
    return row.status if row else None


def load_deal(conn: sa.Connection, deal_id: str) -> dict[str, Any] | None:
    d = deals.c
    row = (
        conn.execute(sa.select(deals).where(d.source_system == HUBSPOT, d.source_id == deal_id))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def load_company(conn: sa.Connection, company_id: str) -> dict[str, Any] | None:
    c = companies.c
    row = (
        conn.execute(sa.select(companies).where(c.source_system == HUBSPOT, c.source_id == company_id))
        .mappings()
        .first()
    )
    return dict(row) if row else None


def picking_ids(chain: Mapping[str, Any]) -> list[int]:
    raw = chain.get("picking_ids")
    if isinstance(raw, str):
        raw = json.loads(raw)
    return [int(i) for i in raw or []]


def money(value: Any) -> Decimal | None:
    """An amount as the chain stores it (Numeric), from a warehouse or a HubSpot value."""
    if value is None or value == "":
        return None
    return Decimal(str(value)).quantize(Decimal("0.0001"))


def generation_sub(msg: OutboxMessage) -> str:
    """The ledger sub-key of a chain generation's one write per step: empty for the first."""
    return "" if msg.generation <= 1 else str(msg.generation)


@contextlib.contextmanager
def writing(contract: str | None) -> Iterator[None]:
    """Around a write rendered by ``contract``: a target's refusal (Odoo's validation error, EasyPost's or
    HubSpot's 4xx) is dead-lettered with the contract version that made the payload, the field the target
    named and its message, so the fix (a contract edit) and the replay can be told apart from the cause."""
    try:
        yield
    except StepRejected:
        raise
    except TerminalError as exc:
        field = getattr(exc, "field", None)
        raise StepRejected(str(exc), field=str(field) if field else None, contract=contract) from exc
