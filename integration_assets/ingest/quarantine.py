"""A load's bad rows: the rows that go to dead letters, and the rows whose parent is not loaded yet (quarantined
too, and replayed when the parent table loads: ``ingest.replay.replay_deferred_references``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from integration_assets.contracts.records import RawChunk
from integration_assets.contracts.spec import Contract
from integration_assets.dead_letters.store import row_fingerprint
from integration_assets.mapping.results import RowFailure
from integration_assets.warehouse.writer import existing_keys


def dead_letter_rows(
    failures: list[RowFailure],
    contract_id: str | None,
    system: str,
    entity: str,
    file_name: str,
    load_id: str,
) -> list[dict[str, Any]]:
    """The dead-letter rows of a chunk's failures (``dead_letters.store.write_row_dead_letters``)."""
    rows: list[dict[str, Any]] = []
    for f in failures:
        raw = f.raw if isinstance(f.raw, str) else json.dumps(f.raw, default=str, ensure_ascii=False)
        rows.append(
            {
                "fingerprint": row_fingerprint(system, entity, f.raw),
                "source_system": system,
                "entity": entity,
                "natural_key": f.natural_key,
                "stage": f.stage,
                "check_name": f.check[:128],
                "reason": f.reason,
                "column_name": f.column,
                "offending_value": f.value,
                "errors": json.dumps(list(f.errors), default=str, ensure_ascii=False),
                "raw_record": raw,
                "contract_version": contract_id,
                "file_name": file_name,
                "position": f.position,
                "load_id": load_id,
            }
        )
    # One record can only be quarantined once per load even if the file holds it twice.
    unique: dict[str, dict[str, Any]] = {}
    for r in rows:
        unique.setdefault(r["fingerprint"], r)
    return list(unique.values())


def reference_failures(
    conn: sa.Connection,
    contract: Contract,
    mapped: pd.DataFrame,
    chunk: RawChunk,
) -> tuple[pd.DataFrame, list[RowFailure]]:
    """Rows whose parent (e.g. the order of an order line) is not in the warehouse are quarantined.

    They are re-tried automatically when the parent table is loaded (see replay_deferred_references).
    """
    if not contract.references or mapped.empty:
        return mapped, []
    bad = np.zeros(len(mapped), dtype=bool)
    reasons: dict[int, tuple[str, str, str]] = {}
    for col, ref in contract.references.items():
        if ref.on_missing == "keep":
            continue
        values = mapped[col]
        found = existing_keys(conn, ref.table, contract.system, values.dropna().unique().tolist())
        missing = values.notna().to_numpy() & ~values.isin(list(found)).to_numpy()
        for i in np.flatnonzero(missing & ~bad):
            reasons[int(i)] = (col, str(values.iloc[i]), ref.table)
        bad |= missing
    if not bad.any():
        return mapped, []
    failures = []
    raw = chunk.frame.reset_index(drop=True)
    pos_index = {int(p): i for i, p in enumerate(chunk.positions)}
    for i in np.flatnonzero(bad):
        col, value, table = reasons[int(i)]
        pos = int(mapped["_pos"].iloc[i])
        rec = raw.iloc[pos_index[pos]].to_dict() if pos in pos_index else {}
        rec = {
            k: (None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else v)
            for k, v in rec.items()
        }
        src = contract.source_for(col) or col
        reason = f"{src!r} refers to {table} id {value!r}, which is not in the warehouse (yet)"
        failures.append(
            RowFailure(
                position=pos,
                natural_key=str(mapped["source_id"].iloc[i]),
                stage="load",
                check=f"reference:{col}->{table}",
                column=src,
                value=value,
                reason=reason,
                raw=json.loads(json.dumps(rec, default=str)),
                errors=(
                    {
                        "stage": "load",
                        "check": f"reference:{col}->{table}",
                        "column": src,
                        "value": value,
                        "reason": reason,
                    },
                ),
            )
        )
    return mapped.iloc[np.flatnonzero(~bad)].reset_index(drop=True), failures
