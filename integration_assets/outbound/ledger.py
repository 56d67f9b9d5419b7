"""The one writer of ``outbound_ledger`` and ``outbound_chains`` (docs/ARCHITECTURE.md, "The outbound flow").

The ledger holds one row per outbound write, keyed ``<step>:<chain_id>[:<sub>]``::

    (none) ──start──▶ started ──finish──▶ done | found | skipped | waiting | compensated
                         └──────────────▶ dead_lettered ──replay──▶ started …

``started`` is committed before the call to the target: a row that is ``started`` when a message arrives
means an earlier attempt may have reached the target, so the step looks the object up before creating it.
``found`` says the lookup found what a lost response had created. ``waiting``: the step had nothing to do
yet (a label waiting for the payment); the next message for the chain runs it again.

A chain (``outbound_chains``, one row per HubSpot deal) carries what the steps learnt (order, pickings,
shipment, tracking code) and where it is (``status``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from integration_assets.warehouse.schema import outbound_chains, outbound_ledger

FINAL = frozenset({"done", "found", "skipped", "compensated"})
STATUSES = frozenset({"started", "waiting", "dead_lettered", *FINAL})
CHAIN_STATUSES = frozenset(
    {"won", "ordered", "labelled", "written_back", "cancelled", "refunded", "review", "dead_lettered"}
)
_CHAIN_COLUMNS = frozenset(c.name for c in outbound_chains.columns) - {"chain_id"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def ledger_key(step: str, chain_id: str, sub: str = "") -> str:
    """``<step>:<chain_id>[:<sub>]``: the deterministic key of one outbound write."""
    return f"{step}:{chain_id}:{sub}" if sub else f"{step}:{chain_id}"


@dataclass(frozen=True)
class LedgerRow:
    key: str
    step: str
    chain_id: str
    target_system: str
    status: str
    target_id: str | None
    target_ref: str | None
    attempts: int
    contract_version: str | None
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    done_at: datetime | None
    latency_ms: int | None
    outcome_detail: str | None


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT (both have ON CONFLICT)."""
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive (they are stored as UTC)."""
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts


def get(conn: sa.Connection, key: str, *, for_update: bool = False) -> LedgerRow | None:
    stmt = sa.select(*outbound_ledger.columns).where(outbound_ledger.c.key == key)
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return None
    d = row._asdict()
    for k in ("first_attempt_at", "last_attempt_at", "done_at"):
        d[k] = _aware(d[k])
    return LedgerRow(**d)


def start(
    conn: sa.Connection,
    key: str,
    *,
    step: str,
    chain_id: str,
    target_system: str,
    now: datetime | None = None,
) -> LedgerRow:
    """One more attempt at ``key``: ``started`` (kept if final: the caller checks ``get`` first), attempts + 1.
    Commit it before calling the target."""
    now = now or utcnow()
    ins = _insert(conn, outbound_ledger).values(
        key=key,
        step=step,
        chain_id=chain_id,
        target_system=target_system,
        status="started",
        attempts=1,
        first_attempt_at=now,
        last_attempt_at=now,
    )
    c = outbound_ledger.c
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=[c.key],
            set_={
                "status": sa.case((c.status.in_(sorted(FINAL)), c.status), else_=sa.literal("started")),
                "attempts": c.attempts + 1,
                "last_attempt_at": now,
                "first_attempt_at": sa.func.coalesce(c.first_attempt_at, now),
            },
        )
    )
    row = get(conn, key)
    assert row is not None
    return row


def finish(
    conn: sa.Connection,
    key: str,
    status: str,
    *,
    target_id: str | None = None,
    target_ref: str | None = None,
    contract_version: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Settle ``key`` (``done`` / ``found`` / ``skipped`` / ``waiting`` / ``compensated`` /
    ``dead_lettered``) with what the target answered (ids only) and the latency since the first attempt."""
    if status not in STATUSES:
        raise ValueError(f"unknown ledger status {status!r} for {key=}")
    now = now or utcnow()
    row = get(conn, key)
    if row is None:
        raise ValueError(f"finish before start: {key=}")
    first = row.first_attempt_at or now
    values: dict[str, Any] = {"status": status, "last_attempt_at": now}
    if status in FINAL:
        values["done_at"] = now
        values["latency_ms"] = max(0, int((now - first).total_seconds() * 1000))
    if target_id is not None:
        values["target_id"] = str(target_id)
    if target_ref is not None:
        values["target_ref"] = str(target_ref)
    if contract_version is not None:
        values["contract_version"] = contract_version
    if detail:
        values["outcome_detail"] = json.dumps(dict(detail), sort_keys=True, default=str)
    conn.execute(sa.update(outbound_ledger).where(outbound_ledger.c.key == key).values(**values))


def reset_attempts(conn: sa.Connection, key: str) -> None:
    """A replay after the cause was fixed: the attempt limit counts again from zero; the row stays (the
    step still looks up before creating)."""
    conn.execute(
        sa.update(outbound_ledger)
        .where(outbound_ledger.c.key == key, outbound_ledger.c.status == "dead_lettered")
        .values(attempts=0, status="started")
    )


# -- chains ------------------------------------------------------------------------------------------------
def read_chain(conn: sa.Connection, chain_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(*outbound_chains.columns).where(outbound_chains.c.chain_id == str(chain_id))
    ).first()
    if row is None:
        return None
    d = row._asdict()
    for k in ("won_at", "shipment_status_at", "updated_at"):
        d[k] = _aware(d[k])
    if d.get("picking_ids"):
        d["picking_ids"] = json.loads(d["picking_ids"])
    return d


def update_chain(
    conn: sa.Connection,
    chain_id: str,
    values: Mapping[str, Any],
    *,
    generation: int = 1,
    now: datetime | None = None,
) -> None:
    """Set columns of the chain (created on its first update, status ``won``, deal id = chain id)."""
    unknown = set(values) - _CHAIN_COLUMNS
    if unknown:
        raise ValueError(f"not columns of outbound_chains: {sorted(unknown)}")
    if "status" in values and values["status"] not in CHAIN_STATUSES:
        raise ValueError(f"unknown chain status {values['status']!r} for {chain_id=}")
    now = now or utcnow()
    vals = dict(values)
    if "picking_ids" in vals and not isinstance(vals["picking_ids"], str | None):
        vals["picking_ids"] = json.dumps(list(vals["picking_ids"]))
    vals["updated_at"] = now
    row = {
        "chain_id": str(chain_id),
        "deal_id": str(chain_id),
        "generation": generation,
        "status": "won",
        "won_at": now,
        **vals,
    }
    stmt = _insert(conn, outbound_chains).values(**row)
    conn.execute(stmt.on_conflict_do_update(index_elements=[outbound_chains.c.chain_id], set_=vals))


def ensure_chain(
    conn: sa.Connection, chain_id: str, *, generation: int = 1, now: datetime | None = None
) -> None:
    """The chain's row exists (status ``won``) once its first message is handled; an existing row is kept."""
    now = now or utcnow()
    stmt = _insert(conn, outbound_chains).values(
        chain_id=str(chain_id),
        deal_id=str(chain_id),
        generation=generation,
        status="won",
        won_at=now,
        updated_at=now,
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=[outbound_chains.c.chain_id]))
