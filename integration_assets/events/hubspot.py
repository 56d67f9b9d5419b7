"""HubSpot ``<object>.propertyChange``, ``.deletion`` and ``.restore`` webhooks applied to the existing canonical
rows (contacts, companies, deals).

The reasoning: docs/DESIGN.md, "HubSpot property changes (events/hubspot.py)".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from integration_assets.contracts.ids import hubspot_id
from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.contracts.records import RawChunk
from integration_assets.contracts.spec import Contract, ContractError, contracts_for
from integration_assets.mapping.engine import ContractMapper
from integration_assets.mapping.values import apply_derived
from integration_assets.privacy.suppress import merge_keeping_erased
from integration_assets.providers.hubspot import HUBSPOT_ARCHIVE_CHANGES, hubspot_kind
from integration_assets.warehouse.schema import CANONICAL_TABLES
from integration_assets.warehouse.writer import CanonicalStage

SYSTEM = "hubspot"
_LINEAGE_TARGETS = ("source_id", "source_updated_at")


@dataclass(frozen=True, slots=True)
class Change:
    """One parsed property-change event of a batch (``pos`` = its position in the batch)."""

    pos: int
    doc: dict[str, Any]


@dataclass
class PlannedChanges:
    """The mapped changes of one canonical table, before the warehouse is read."""

    table: str
    contract: Contract
    changes: pd.DataFrame  # pos, object_id, column, occurred_at, order
    values: pd.DataFrame  # canonical values, indexed by pos
    object_ids: dict[int, str] = field(default_factory=dict)  # pos -> object id, for the ledger


@dataclass
class AppliedChanges:
    applied: set[int] = field(default_factory=set)
    stale: set[int] = field(default_factory=set)
    unknown: dict[int, str] = field(default_factory=dict)  # pos -> reason


def api_contract(table: str) -> Contract:
    """The newest HubSpot API contract loading ``table`` (its ``properties.*`` fields map the values)."""
    family = [c for c in contracts_for(SYSTEM, table) if c.variant == "api" and c.target == table]
    if not family:
        raise ContractError(f"no HubSpot API contract for {table}: property changes cannot be mapped")
    return max(family, key=lambda c: c.version)


_MAPPERS: dict[str, tuple[Contract, ContractMapper]] = {}


def _patch_mapper(contract: Contract) -> ContractMapper:
    """A mapper of the contract in which only the key and the timestamp are required: a change carries one
    property, and the others are simply absent. Rebuilt when the contract file was reloaded."""
    cached = _MAPPERS.get(contract.id)
    if cached is not None and cached[0] is contract:
        return cached[1]
    fields = {
        src: spec if spec.to in _LINEAGE_TARGETS else spec.model_copy(update={"required": False})
        for src, spec in contract.fields.items()
    }
    mapper = ContractMapper(contract.model_copy(update={"fields": fields}))
    _MAPPERS[contract.id] = (contract, mapper)
    return mapper


def object_id(value: Any) -> str | None:
    """The canonical HubSpot id (``contracts.ids``): ``7001``, ``"07001"`` and ``7001.0`` are one object, as
    in a batch load; anything else is not an id."""
    return hubspot_id(value)


def _occurred_ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    # HubSpot sends epoch milliseconds; 1e11 ms is 1973, 1e14 ms is year 5138: anything outside is not ms.
    return value if 10**11 <= value < 10**14 else None


def _order(doc: dict[str, Any], pos: int) -> int:
    """Tie-break of changes at the same millisecond: HubSpot's eventId, else the position in the batch."""
    event_id = doc.get("eventId")
    return int(event_id) if isinstance(event_id, int) and not isinstance(event_id, bool) else pos


def plan(
    table: str, items: Sequence[Change]
) -> tuple[PlannedChanges | None, dict[int, tuple[str, str]], set[int]]:
    """Map a batch's property changes for ``table``. Returns (planned changes, rejected pos -> (check,
    reason), ignored positions)."""
    contract = api_contract(table)
    id_src = contract.source_for("source_id")
    ts_src = contract.source_for("source_updated_at")
    assert id_src and ts_src  # the contract validator guarantees both
    rejected: dict[int, tuple[str, str]] = {}
    ignored: set[int] = set()
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    columns: list[str] = []
    orders: list[int] = []
    archived_src = contract.source_for("archived_at")
    for item in items:
        doc = item.doc
        obj = object_id(doc.get("objectId"))
        when = _occurred_ms(doc.get("occurredAt"))
        archive = HUBSPOT_ARCHIVE_CHANGES.get(hubspot_kind(doc))  # legacy or generic (object.*) format
        if archive is not None:
            if obj is None or when is None:
                rejected[item.pos] = (
                    "invalid_payload",
                    "HubSpot deletion/restore needs objectId and occurredAt",
                )
            elif archived_src is None:
                rejected[item.pos] = (
                    "unknown_property",
                    f"{contract.id} maps nothing to archived_at: "
                    "deletions cannot be recorded; map archivedAt in the contract",
                )
            else:
                # A deletion is a change of archived_at to its own time; a restore clears it.
                stamp = pd.Timestamp(when, unit="ms", tz="UTC").isoformat()
                rows.append({id_src: obj, ts_src: stamp, archived_src: stamp if archive[1] else None})
                positions.append(item.pos)
                columns.append("archived_at")
                orders.append(_order(doc, item.pos))
            continue
        prop = doc.get("propertyName")
        if obj is None or when is None or not isinstance(prop, str) or not prop:
            rejected[item.pos] = (
                "invalid_payload",
                "HubSpot property change needs objectId (integer), occurredAt (epoch ms) and propertyName",
            )
            continue
        src = f"properties.{prop}"
        spec = contract.fields.get(src)
        if spec is None or spec.to in _LINEAGE_TARGETS:
            if spec is not None or src in contract.ignored or prop in contract.ignored:
                ignored.add(item.pos)
            else:
                rejected[item.pos] = (
                    "unknown_property",
                    f"{contract.id} maps no property {prop!r}: add it to the contract (or to 'ignored'), "
                    "or remove it from the webhook subscription",
                )
            continue
        value = doc.get("propertyValue")
        if isinstance(value, dict | list):
            rejected[item.pos] = ("invalid_payload", f"propertyValue of {prop!r} is not a scalar")
            continue
        rows.append({id_src: obj, ts_src: pd.Timestamp(when, unit="ms", tz="UTC").isoformat(), src: value})
        positions.append(item.pos)
        columns.append(spec.to)
        orders.append(_order(doc, item.pos))
    if not rows:
        return None, rejected, ignored
    raw = pd.DataFrame.from_records(rows)
    raw = raw.astype(object).where(raw.notna(), None)
    pos_array = np.asarray(positions, dtype=np.int64)
    mapped = _patch_mapper(contract).map_chunk(RawChunk(raw, pos_array, []))
    for f in mapped.failures:
        rejected[int(f.position)] = (f.check, f"{contract.id}: {f.reason}")
    frame = mapped.frame
    values = frame.set_index("_pos", drop=False)
    by_pos = dict(zip(positions, zip(columns, orders, strict=True), strict=True))
    kept = frame["_pos"].to_numpy()
    changes = pd.DataFrame(
        {
            "pos": kept,
            "object_id": frame["source_id"].astype(object).to_numpy(),
            "column": [by_pos[int(p)][0] for p in kept],
            "occurred_at": frame["source_updated_at"].reset_index(drop=True),
            "order": [by_pos[int(p)][1] for p in kept],
        }
    )
    planned = PlannedChanges(
        table,
        contract,
        changes,
        values,
        {int(p): str(o) for p, o in zip(changes["pos"], changes["object_id"], strict=True)},
    )
    return planned, rejected, ignored


def read_rows(conn: sa.Connection, table: str, ids: Sequence[str], *, lock: bool) -> pd.DataFrame:
    """Current canonical rows of ``ids`` with the model's dtypes (lineage columns included)."""
    t = CANONICAL_TABLES[table]
    names = [c.name for c in t.columns]
    found: list[Any] = []
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), 1000):
        stmt = sa.select(t).where(
            t.c.source_system == SYSTEM, t.c.source_id.in_(wanted[start : start + 1000])
        )
        stmt = stmt.order_by(t.c.source_id)  # one lock order for every drain: no deadlocks between them
        if lock and conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        found.extend(conn.execute(stmt).all())
    frame = pd.DataFrame.from_records([tuple(r) for r in found], columns=names)
    schema = CANONICAL_MODELS[table].to_schema()
    for name, col in schema.columns.items():
        dtype = str(col.dtype).lower()
        if "string" in dtype:
            frame[name] = (
                frame[name].astype(object).where(frame[name].notna(), None).astype(pd.StringDtype("pyarrow"))
            )
        elif "datetime" in dtype:
            frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[ns, UTC]")
        elif "bool" in dtype:
            frame[name] = frame[name].astype("boolean")
        elif "float" in dtype:
            frame[name] = frame[name].map(lambda v: None if v is None else float(v)).astype("float64")
    return frame


def _recompute_derived(contract: Contract, rows: pd.DataFrame) -> None:
    apply_derived(contract, rows)


def apply(conn: sa.Connection, planned: PlannedChanges, claimed: set[int], load_id: str) -> AppliedChanges:
    """Patch the rows of ``planned`` (only the claimed positions: the others are duplicates)."""
    out = AppliedChanges()
    changes = planned.changes[planned.changes["pos"].isin(list(claimed))]
    if changes.empty:
        return out
    current = read_rows(conn, planned.table, changes["object_id"].unique().tolist(), lock=True)
    known = set(current["source_id"].astype(object))
    missing = ~changes["object_id"].isin(list(known))
    singular = planned.table.rstrip("s")
    for pos, obj in zip(changes.loc[missing, "pos"], changes.loc[missing, "object_id"], strict=True):
        out.unknown[int(pos)] = (
            f"HubSpot {singular} {obj} is not in the warehouse (load it, then "
            "`integration-assets events replay --check unknown_object`)"
        )
    changes = changes[~missing]
    if changes.empty:
        return out
    current = current.set_index(current["source_id"].astype(object), drop=False)
    base = current["source_updated_at"]
    before = base.reindex(changes["object_id"].to_numpy()).astype("int64").to_numpy()
    newer = changes["occurred_at"].astype("int64").to_numpy() > before
    out.stale.update(int(p) for p in changes.loc[~newer, "pos"])
    fresh = changes[newer].sort_values(["object_id", "column", "occurred_at", "order"])
    winners = fresh.drop_duplicates(["object_id", "column"], keep="last")
    out.stale.update(int(p) for p in set(fresh["pos"]) - set(winners["pos"]))
    out.applied.update(int(p) for p in winners["pos"])
    if winners.empty:
        return out
    ids = winners["object_id"].unique()
    rows = current.loc[ids].copy()
    for column, part in winners.groupby("column"):
        values = planned.values.loc[part["pos"].to_numpy(), column]
        rows.loc[part["object_id"].to_numpy(), column] = values.array
    _recompute_derived(planned.contract, rows)
    newest = winners.groupby("object_id")["occurred_at"].max()
    rows["source_updated_at"] = newest.reindex(rows.index).array
    rows["mapping_version"] = planned.contract.id
    rows["_pos"] = winners.groupby("object_id")["pos"].max().reindex(rows.index).to_numpy()
    stage = CanonicalStage(conn, planned.table)
    stage.add(rows.reset_index(drop=True), load_id)
    # Only rows that exist and were read FOR UPDATE above: nothing to insert, so no wait for a batch load's
    # merge of the same table.
    merge_keeping_erased(stage, lock=False)
    return out
