"""Generate docs/DATA_DICTIONARY.md from the pandera canonical models (a test keeps the file current)."""

from __future__ import annotations

from pathlib import Path

from integration_assets.contracts.models import CANONICAL_MODELS, LINEAGE_DOCS
from integration_assets.contracts.spec import all_contracts
from integration_assets.warehouse.schema import CANONICAL_TABLES


def render() -> str:
    out = [
        "# Data dictionary",
        "",
        "Generated from the pandera models in `integration_assets/contracts/models.py` by",
        "`python -m integration_assets.contracts.dictionary`; do not edit by hand.",
        "",
        "Every canonical table is keyed by (`source_system`, `source_id`) and also carries:",
        "",
        "| column | meaning |",
        "|---|---|",
    ]
    out += [f"| `{c}` | {d} |" for c, d in LINEAGE_DOCS.items()]
    for table, model in CANONICAL_MODELS.items():
        schema = model.to_schema()
        sql = CANONICAL_TABLES[table]
        contracts = sorted(c.id for c in all_contracts() if c.target == table)
        out += [
            "",
            f"## `{table}`",
            "",
            (model.__doc__ or "").strip(),
            "",
            f"Fed by: {', '.join(f'`{c}`' for c in contracts) or '—'}",
            "",
            "| column | SQL type | nullable | checks | description |",
            "|---|---|---|---|---|",
        ]
        for name, col in schema.columns.items():
            checks = ", ".join(
                str(ch.name) + (f"({ch.statistics})" if ch.statistics else "") for ch in col.checks
            )
            out.append(
                f"| `{name}` | {sql.c[name].type} | {'yes' if col.nullable else 'no'} | {checks} | {col.description or ''} |"
            )
    return "\n".join(out) + "\n"


def write(path: Path | None = None) -> Path:
    path = path or Path(__file__).resolve().parents[2] / "docs" / "DATA_DICTIONARY.md"
    path.write_text(render(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write())
