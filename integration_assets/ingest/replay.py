"""Replay dead letters through the current (or a chosen) contract version.

Row dead letters are re-mapped from their stored raw record and merged like any load (idempotent: a row
that is already in the warehouse is left unchanged); the ones that load become ``replayed``, the ones that
fail again stay ``pending`` with the new reason and one more attempt. A rejected file is re-ingested from
``rejected/``. Every outcome is written to the audit trail. A dry run does the same work in a transaction
that is rolled back.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from integration_assets.connectors.files.source import inspect
from integration_assets.contracts.matching import column_drift, match_contract
from integration_assets.contracts.records import FileRejected, RawChunk
from integration_assets.contracts.spec import Contract, contracts_for, get_contract
from integration_assets.dead_letters import queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.ingest.load import ingest_file
from integration_assets.ingest.quarantine import dead_letter_rows, reference_failures
from integration_assets.mapping.engine import ContractMapper
from integration_assets.privacy.suppress import merge_keeping_erased
from integration_assets.settings import Settings, get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.db import claim_writer, get_engine
from integration_assets.warehouse.ledger import LoadReport, new_load_id, utcnow
from integration_assets.warehouse.writer import CanonicalStage

ROW_STAGES = ("parse", "map", "validate", "load")


@dataclass
class ReplayOutcome:
    dry_run: bool
    selected: int = 0
    replayed: list[int] = field(default_factory=list)  # loaded (or would load)
    still_failing: dict[int, str] = field(default_factory=dict)  # id -> new reason
    skipped: dict[int, str] = field(default_factory=dict)  # id -> why it was not attempted
    loads: list[dict[str, Any]] = field(default_factory=list)
    tables: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "selected": self.selected,
            "replayed": len(self.replayed),
            "still_failing": len(self.still_failing),
            "skipped": len(self.skipped),
            "replayed_ids": self.replayed,
            "failing": {str(k): v for k, v in self.still_failing.items()},
            "skipped_ids": {str(k): v for k, v in self.skipped.items()},
            "loads": self.loads,
            "tables": sorted(self.tables),
        }


def _pick_contract(system: str, entity: str, columns: list[str], contract_id: str | None) -> Contract | None:
    if contract_id:
        return get_contract(contract_id)
    best = None
    for c in contracts_for(system, entity):
        missing, _, _ = column_drift(c, columns)
        if not missing and (best is None or c.version > best.version):
            best = c
    return best


def replay(
    flt: Filter,
    *,
    contract_id: str | None = None,
    dry_run: bool = False,
    who: str | None = None,
    run_id: str | None = None,
    settings: Settings | None = None,
    engine: sa.Engine | None = None,
) -> ReplayOutcome:
    """Replay the dead letters selected by ``flt``; see the module docstring for the rules."""
    settings = settings or get_settings()
    engine = engine or get_engine(settings.warehouse_url)
    who = who or store.actor()
    out = ReplayOutcome(dry_run=dry_run)
    with engine.connect() as conn:
        rows = queries.select(conn, flt)
    out.selected = len(rows)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] != "pending":
            out.skipped[r["id"]] = f"status is {r['status']}"
        elif r["stage"] == "file":
            groups[(r["source_system"], r["entity"], "file")].append(r)
        elif r["stage"] == "event":
            # Event dead letters go back on the queue (events.replay), not through a load: the caller
            # (the replay_dead_letters job, `dlq replay`) sends them there.
            out.skipped[r["id"]] = "an event dead letter: replayed through the event queue, not a load"
        else:
            groups[(r["source_system"], r["entity"], "rows")].append(r)
    for (system, entity, kind), items in groups.items():
        if kind == "file":
            _replay_files(items, out, contract_id, dry_run, who, run_id, settings, engine)
        else:
            _replay_rows(system, entity, items, out, contract_id, dry_run, who, run_id, settings, engine)
    return out


def _replay_rows(
    system: str,
    entity: str,
    items: list[dict[str, Any]],
    out: ReplayOutcome,
    contract_id: str | None,
    dry_run: bool,
    who: str,
    run_id: str | None,
    settings: Settings,
    engine: sa.Engine,
) -> None:
    records, ids = [], []
    for r in items:
        try:
            raw = json.loads(r["raw_record"]) if r["raw_record"] else None
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            out.skipped[r["id"]] = (
                "the raw record is unparsed text (e.g. a broken CSV line): fix the file and drop it again, or discard"
            )
            continue
        records.append(raw)
        ids.append(r["id"])
    if not records:
        return
    frame = pd.DataFrame.from_records(records)
    if all(isinstance(v, str) or v is None for v in frame.to_numpy().ravel()):
        frame = frame.astype(
            pd.StringDtype("pyarrow")
        )  # CSV-originated records: strings, as the reader gives them
    else:
        frame = frame.astype(object).where(frame.notna(), None)
    contract = _pick_contract(system, entity, list(frame.columns), contract_id)
    if contract is None:
        for i in ids:
            out.still_failing[i] = "no contract version has the columns these records need"
        return
    order = np.argsort(np.asarray(ids))
    frame = frame.iloc[order].reset_index(drop=True)
    positions = np.asarray(ids, dtype=np.int64)[order]  # the dead letter id stands in for the file position
    chunk = RawChunk(frame, positions, [])
    mapper = ContractMapper(
        contract, max_field_bytes=settings.max_field_bytes, fallback_encoding=settings.fallback_encoding
    )
    report = LoadReport(
        load_id=new_load_id(),
        source_system=system,
        entity=entity,
        file_name=None,
        kind="replay",
        run_id=run_id,
        contract=contract.id,
        target_table=contract.target,
    )
    conn = engine.connect()
    tx = conn.begin()
    try:
        claim_writer(conn)
        if not dry_run:
            ledger.start(conn, report)
        mapped = mapper.map_chunk(chunk)
        good, ref_failures = reference_failures(conn, contract, mapped.frame, chunk)
        failures = mapped.failures + ref_failures
        stage = CanonicalStage(conn, contract.target)
        stage.add(good, report.load_id, keep=mapped.absent)  # columns the records lack stay as stored
        counts = merge_keeping_erased(stage)
        loaded_ids = [int(p) for p in good["_pos"]]
        failed = {int(f.position): f.reason for f in failures}
        report.rows_read, report.rows_quarantined = len(ids), len(failures)
        report.rows_inserted, report.rows_updated = counts.inserted, counts.updated
        report.rows_unchanged, report.rows_duplicate = counts.unchanged, counts.duplicates
        report.status = "succeeded"
        # New failures update the same dead letters (same raw record → same fingerprint): attempts+1, new reason.
        dl_rows = dead_letter_rows(failures, contract.id, system, entity, "", report.load_id)
        by_id = {r["id"]: r for r in items}
        for row, f in zip(dl_rows, failures, strict=False):
            row["file_name"] = by_id[int(f.position)]["file_name"]
            row["position"] = by_id[int(f.position)]["position"]
        store.write_row_dead_letters(conn, dl_rows)
        if loaded_ids:
            store.mark_replayed(
                conn, loaded_ids, f"replayed with {contract.id} by {who}", load_id=report.load_id
            )
        action = "dry_run" if dry_run else "replay"
        store.audit(
            conn,
            loaded_ids,
            action,
            who,
            "would_load" if dry_run else "replayed",
            contract_version=contract.id,
            run_id=run_id,
        )
        for i, reason in failed.items():
            store.audit(
                conn,
                [i],
                action,
                who,
                "still_failing",
                contract_version=contract.id,
                detail=reason,
                run_id=run_id,
            )
        if not dry_run:
            ledger.finish(conn, report)
        if dry_run:
            tx.rollback()
        else:
            tx.commit()
    except Exception:
        tx.rollback()
        raise
    finally:
        conn.close()
    out.replayed.extend(loaded_ids)
    out.still_failing.update(failed)
    out.loads.append(report.as_dict())
    if loaded_ids:
        out.tables.add(contract.target)


def _contract_that_fits(
    path: Path, system: str, entity: str, settings: Settings
) -> tuple[str | None, str | None]:
    """(the contract a rejected file would load with, None) or (None, why not): a dry run reads the header
    and the first chunk, as the load would before it maps anything."""
    try:
        src = inspect(path, max_bytes=settings.max_file_bytes, fallback_encoding=settings.fallback_encoding)
        first = next(src.chunks(settings.chunk_rows), None)
        columns = src.columns or (list(first.frame.columns) if first is not None else [])
        return match_contract(system, entity, src.format, columns).contract.id, None
    except FileRejected as exc:
        return None, exc.message


def _replay_files(
    items: list[dict[str, Any]],
    out: ReplayOutcome,
    contract_id: str | None,
    dry_run: bool,
    who: str,
    run_id: str | None,
    settings: Settings,
    engine: sa.Engine,
) -> None:
    for r in items:
        raw = json.loads(r["raw_record"] or "{}")
        path = settings.rejected_dir / raw.get("file", "")
        if not raw.get("file") or not path.is_file():
            out.skipped[r["id"]] = f"the rejected file is no longer at {path}"
            continue
        if dry_run:
            fits, why = _contract_that_fits(path, r["source_system"], r["entity"], settings)
            if fits is not None:
                out.replayed.append(r["id"])
                with engine.begin() as conn:
                    store.audit(
                        conn,
                        [r["id"]],
                        "dry_run",
                        who,
                        "would_load",
                        contract_version=fits,
                        run_id=run_id,
                    )
            else:
                out.still_failing[r["id"]] = why or "no contract fits"
            continue
        load = ingest_file(
            path,
            r["source_system"],
            r["entity"],
            settings=settings,
            engine=engine,
            run_id=run_id,
            force=True,
            contract_id=contract_id,
            kind="replay",
        )
        out.loads.append(load.as_dict())
        with engine.begin() as conn:
            if load.status == "succeeded":
                store.mark_replayed(
                    conn, [r["id"]], f"file re-ingested with {load.contract} by {who}", load_id=load.load_id
                )
                store.audit(
                    conn, [r["id"]], "replay", who, "replayed", contract_version=load.contract, run_id=run_id
                )
                out.replayed.append(r["id"])
                if load.target_table:
                    out.tables.add(load.target_table)
            else:
                store.mark_still_failing(conn, r["id"], load.error or load.status)
                store.audit(
                    conn,
                    [r["id"]],
                    "replay",
                    who,
                    "still_failing",
                    contract_version=load.contract,
                    detail=load.error,
                    run_id=run_id,
                )
                out.still_failing[r["id"]] = load.error or load.status
        if load.status == "succeeded":
            dest = (
                settings.archive_dir
                / r["source_system"]
                / r["entity"]
                / f"{utcnow():%Y-%m-%d}"
                / f"replayed__{path.name}"
            )
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), dest)
            reason = path.with_name(path.name + ".reason.json")
            if reason.exists():
                reason.unlink()


def replay_deferred_references(parent_table: str, **kwargs: Any) -> ReplayOutcome:
    """Retry rows quarantined because their parent (a row of ``parent_table``) was not loaded yet."""
    return replay(Filter(stage="load", check_like=f"reference:%->{parent_table}"), **kwargs)
