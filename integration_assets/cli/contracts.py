"""``integration-assets contracts …``: list contracts; check which version fits a file and what drifted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from integration_assets.connectors.files.source import inspect
from integration_assets.contracts.matching import column_drift, match_contract
from integration_assets.contracts.records import FileRejected
from integration_assets.contracts.spec import all_contracts
from integration_assets.mapping.drift import DriftStats
from integration_assets.mapping.engine import ContractMapper
from integration_assets.settings import get_settings


@click.group("contracts")
def contracts() -> None:
    """Mapping contracts (YAML, versioned per source system and entity)."""


@contracts.command("list")
def list_contracts() -> None:
    """Every contract version, with its inbox folder, formats and target table."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in ("contract", "inbox folder", "formats", "delivery", "table"):
        table.add_column(col, no_wrap=True)
    for c in sorted(all_contracts(), key=lambda c: c.id):
        table.add_row(c.id, f"{c.system}/{c.entity}", ",".join(c.formats), c.delivery, c.target)
    # As wide as the rows need (aligned columns, one line per contract), whatever the terminal says.
    Console(width=1000, soft_wrap=True).print(table)


def _guess_folder(path: Path) -> tuple[str, str] | None:
    known = {(c.system, c.entity) for c in all_contracts()}
    parts = path.resolve().parts
    for i in range(len(parts) - 2, 0, -1):
        if (parts[i - 1], parts[i]) in known:
            return parts[i - 1], parts[i]
    return None


def check_file(path: Path, system: str | None, entity: str | None) -> dict:
    """Dry run of a file against the contracts: the version that fits, column drift, and row-level findings."""
    settings = get_settings()
    if not (system and entity):
        guess = _guess_folder(path)
        if guess:
            system, entity = guess
    out: dict = {"file": str(path), "system": system, "entity": entity}
    try:
        src = inspect(path, max_bytes=settings.max_file_bytes, fallback_encoding=settings.fallback_encoding)
    except FileRejected as exc:
        return out | {"ok": False, "reason_code": exc.code, "reason": exc.message}
    out |= {"format": src.format, "encoding": src.encoding, "bytes": src.size, "sha256": src.sha256}
    chunks = src.chunks(settings.chunk_rows)
    first = next(chunks, None)
    columns = src.columns or (list(first.frame.columns) if first is not None else [])
    candidates = [
        c
        for c in all_contracts()
        if src.format in c.formats and (not system or (c.system, c.entity) == (system, entity))
    ]
    out["candidates"] = [
        {"contract": c.id, "missing_required": m, "missing_optional": o, "new_columns": n}
        for c in candidates
        for m, o, n in [column_drift(c, columns)]
    ]
    if not (system and entity):
        fitting = [x for x in out["candidates"] if not x["missing_required"]]
        return out | {
            "ok": bool(fitting),
            "reason": None if fitting else "no contract fits; pass --system/--entity",
        }
    try:
        match = match_contract(system, entity, src.format, columns)
    except FileRejected as exc:
        return out | {"ok": False, "reason_code": exc.code, "reason": exc.message}
    mapper = ContractMapper(
        match.contract, max_field_bytes=settings.max_field_bytes, fallback_encoding=settings.fallback_encoding
    )
    drift, rows, bad = DriftStats(), 0, 0
    checks: Counter[str] = Counter()
    for chunk in ([first] if first is not None else []) + list(chunks):
        mapped = mapper.map_chunk(chunk)
        rows += mapped.rows_in
        bad += len(mapped.failures)
        drift.merge(mapped.drift)
        checks.update(f"{f.check} ({f.column})" if f.column else f.check for f in mapped.failures)
    return out | {
        "ok": True,
        "contract": match.contract.id,
        "new_columns": match.new_columns,
        "missing_optional": match.missing_optional,
        "rows": rows,
        "rows_would_quarantine": bad,
        "failures_by_check": dict(checks.most_common()),
        "drift": drift.as_records(),
    }


@contracts.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", help="Source system (default: from the folder, <system>/<entity>/FILE).")
@click.option("--entity", help="Source entity / inbox folder, e.g. contacts or sale.order.")
@click.option("--json", "as_json", is_flag=True)
def check(file: Path, system: str | None, entity: str | None, as_json: bool) -> None:
    """Which contract version matches FILE, and what drifted (columns, formats, dropdown values). Writes nothing."""
    report = check_file(file, system, entity)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        if not report.get("ok"):
            click.echo(f"no contract fits {file.name}: {report.get('reason')}")
            for c in report.get("candidates", []):
                click.echo(f"  {c['contract']}: missing required {c['missing_required']}")
        else:
            click.echo(
                f"{file.name}: {report.get('contract', 'folder unknown')} ({report.get('format')}, {report.get('encoding')})"
            )
            if "contract" not in report:
                for c in report["candidates"]:
                    if not c["missing_required"]:
                        click.echo(
                            f"  fits {c['contract']} (new columns: {c['new_columns']}); use --system/--entity for a full check"
                        )
            for k in ("new_columns", "missing_optional"):
                if report.get(k):
                    click.echo(f"  {k.replace('_', ' ')}: {report[k]}")
            if "rows" in report:
                click.echo(f"  rows: {report['rows']}, would quarantine: {report['rows_would_quarantine']}")
            for k, v in report.get("failures_by_check", {}).items():
                click.echo(f"    {v:6}  {k}")
            for d in report.get("drift", []):
                click.echo(f"  drift {d['kind']} in {d['column']!r}: {d['rows']} rows, e.g. {d['sample']}")
    raise SystemExit(0 if report.get("ok") else 2)
