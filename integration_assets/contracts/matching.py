"""Which contract version fits a file, from its columns: column drift against each version of its folder.

A file is matched to the newest version whose required columns it has (``match_contract``); a file that fits
another folder's contract far better is refused as ``wrong_folder`` rather than quarantined row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integration_assets.contracts.records import FileRejected
from integration_assets.contracts.spec import Contract, all_contracts, contracts_for


def column_drift(contract: Contract, columns: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(missing required, missing optional, unexpected new) source columns of a file against a contract."""
    cols = set(columns)
    known = set(contract.fields) | set(contract.ignored)
    missing_required = [c for c in contract.required_columns if c not in cols]
    missing_optional = [
        c for c, f in contract.fields.items() if not f.required and not f.absent_ok and c not in cols
    ]
    # Dotted JSON columns are covered by a known parent (associations.* when the contract maps associations).
    new = [c for c in columns if c not in known and not any(c.startswith(k + ".") for k in known)]
    return missing_required, missing_optional, new


@dataclass(frozen=True)
class ContractMatch:
    contract: Contract
    missing_required: list[str]
    missing_optional: list[str]
    new_columns: list[str]

    def drift_findings(self, new_column_limit: int = 100) -> list[dict[str, Any]]:
        """One finding per new or missing column; past ``new_column_limit`` new columns, one summary finding
        (kind ``new_columns_omitted``, the count in its column text) so a wide file cannot flood schema_drift."""
        # schema_drift.column_name is VARCHAR(255) and Postgres text cannot hold NUL: a header name that is
        # longer, or holds one, would fail the load there. Shown escaped, as dead letters show NUL.
        names = [c.replace("\x00", "\\u0000") for c in self.new_columns]
        shown, rest = names[:new_column_limit], names[new_column_limit:]
        out: list[dict[str, Any]] = [
            {"kind": "new_column", "column": c[:255], "rows": 0, "sample": []} for c in shown
        ]
        if rest:
            out.append(
                {
                    "kind": "new_columns_omitted",
                    "column": f"+{len(rest)} more new columns",
                    "rows": 0,
                    "count": len(rest),
                    "sample": [c[:200] for c in rest[:5]],
                }
            )
        out += [
            {"kind": "missing_column", "column": c, "rows": 0, "sample": []} for c in self.missing_optional
        ]
        return out


def _coverage(m: ContractMatch) -> float:
    """Share of a contract's mapped source columns that the file has."""
    return 1 - len(m.missing_optional) / max(len(m.contract.fields), 1)


def _better_folder(
    system: str, entity: str, fmt: str, columns: list[str], coverage: float
) -> ContractMatch | None:
    """A contract of another folder that fits the file far better than this folder's best (a misplaced file)."""
    if coverage >= 0.5:
        return None
    for other in all_contracts():
        if (
            (other.system, other.entity) == (system, entity)
            or fmt not in other.formats
            or other.delivery != "file"
        ):
            continue
        m = ContractMatch(other, *column_drift(other, columns))
        if not m.missing_required and _coverage(m) >= 0.8:
            return m
    return None


def match_contract(system: str, entity: str, fmt: str, columns: list[str]) -> ContractMatch:
    """The newest contract version whose required columns the file has; FileRejected when none fits."""
    family = contracts_for(system, entity)
    if not family:
        known = sorted({f"{c.system}/{c.entity}" for c in all_contracts()})
        raise FileRejected(
            "unknown_entity", f"no mapping contract for {system}/{entity}; known folders: {', '.join(known)}"
        )
    candidates = [c for c in family if fmt in c.formats]
    if not candidates:
        fmts = sorted({f for c in family for f in c.formats})
        raise FileRejected("no_contract_for_format", f"{system}/{entity} has contracts for {fmts}, not {fmt}")
    scored = [ContractMatch(c, *column_drift(c, columns)) for c in candidates]
    fitting = [m for m in scored if not m.missing_required]
    if fitting:
        best_fit = max(
            fitting, key=lambda m: (len(m.contract.fields) - len(m.missing_optional), m.contract.version)
        )
        other = _better_folder(system, entity, fmt, columns, _coverage(best_fit))
        if other is not None:
            raise FileRejected(
                "wrong_folder",
                f"the file has only {_coverage(best_fit):.0%} of the columns of {best_fit.contract.id} but "
                f"{_coverage(other):.0%} of {other.contract.id}: is it in the wrong folder (expected "
                f"{other.contract.system}/{other.contract.entity})?",
            )
        return best_fit
    best = min(scored, key=lambda m: (len(m.missing_required), -m.contract.version))
    # What is missing comes first; a wrong folder is suggested only when another folder's contract fits the
    # file as a whole (its required columns and most of its columns), not merely shares the required ones
    # (Record ID and the dates are in every HubSpot export: a deals file without Deal Stage is a deals file).
    other = _better_folder(system, entity, fmt, columns, 0.0)
    hint = (
        f" The file has {_coverage(other):.0%} of the columns of {other.contract.id}: is it in the wrong "
        f"folder (expected {other.contract.system}/{other.contract.entity})?"
        if other is not None
        else ""
    )
    raise FileRejected(
        "missing_required_columns",
        f"required column(s) missing for {best.contract.id}: "
        f"{', '.join(repr(c) for c in best.missing_required)}.{hint}",
    )
