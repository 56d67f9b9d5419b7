"""Integrity of the canonical tables: present and unique business keys, and parents that exist.

Keys: (source_system, source_id) is the primary key (unique by constraint) and is checked for empty values,
and, where the contracts declare a numeric ``id_type`` (Odoo, HubSpot), for ids not in canonical form: numeric
twins (``42`` and ``042`` stored as two records) and lone non-canonical ids (``042`` stored by a load from
before ids were normalised; the next load of the record writes ``42`` and makes a twin) both fail the check;
``policies.integrity.tables.<table>`` adds required columns and business keys unique per source system
(an order reference, a product code, a contact e-mail). Referential: every child id in
``policies.integrity.references`` must exist as ``source_id`` of the parent table in the same source system.
Samples list source ids, and key values only for non-PII columns.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from integration_assets.contracts import ids as id_rules
from integration_assets.contracts.spec import all_contracts
from integration_assets.policies import Policies
from integration_assets.quality.outcome import CheckOutcome, pii_columns, worst
from integration_assets.warehouse.schema import CANONICAL_TABLES

SAMPLE = 20
TWIN_SCAN = 10_000  # non-canonical ids examined for twins per source system (all are counted)


def _table(table: str) -> sa.Table:
    if table not in CANONICAL_TABLES:  # identifiers only from the allow-list
        raise ValueError(f"unknown canonical table {table!r}")
    return CANONICAL_TABLES[table]


def _missing(col: sa.Column) -> sa.ColumnElement[bool]:
    if isinstance(col.type, sa.String | sa.Text):
        return sa.or_(col.is_(None), sa.func.trim(col) == "")
    return col.is_(None)


def keys(conn: sa.Connection, table: str, policies: Policies) -> CheckOutcome:
    """Not-null and uniqueness of the natural keys of ``table``."""
    t = _table(table)
    spec = policies.integrity.for_table(table)
    check = policies.check("keys")
    pii = pii_columns(table)
    problems: list[str] = []
    names = ("source_system", "source_id", *spec.required)
    for name in names:
        if name not in t.c:
            raise ValueError(f"policies: {table} has no column {name!r}")
    numeric = numeric_id_types(table)
    odd_sql = sa.text(id_rules.NON_CANONICAL_NUMERIC_SQL[conn.dialect.name])
    # One scan of the table for the row count, every missing-value count and the non-canonical ids.
    counts = conn.execute(
        sa.select(
            sa.func.count(),
            *(sa.func.count().filter(_missing(t.c[name])) for name in names),
            *(sa.func.count().filter(sa.and_(t.c.source_system == system, odd_sql)) for system in numeric),
        )
    ).one()
    meta: dict[str, Any] = {"rows": int(counts[0])}
    nulls: dict[str, int] = {}
    for name, n in zip(names, counts[1 : len(names) + 1], strict=True):
        if n:
            nulls[name] = int(n)
            problems.append(f"{n} row(s) without {name}")
    meta["missing_values"] = nulls
    odd_counts = dict(zip(numeric, counts[len(names) + 1 :], strict=True))
    twins, odd = _numeric_twins(conn, t, numeric, {s: int(n) for s, n in odd_counts.items() if n}, odd_sql)
    meta["numeric_twins"], meta["non_canonical_ids"] = twins, odd
    if twins["groups"]:
        problems.append(
            f"{twins['groups']} record(s) stored under several spellings of one id (numeric twins, "
            f"e.g. {twins['sample'][0]['source_ids']})"
        )
    if odd["rows"]:
        problems.append(
            f"{odd['rows']} source_id(s) not in canonical form (loads now write the canonical id, "
            "so such a row is never updated again)"
        )

    duplicates: dict[str, Any] = {}
    if spec.unique and conn.dialect.name == "postgresql":
        # Grouping a million distinct e-mails in the default 4 MB spills to disk many times over.
        conn.exec_driver_sql("SET LOCAL work_mem = '128MB'")
    # (source_system, source_id) is the primary key: the database already refuses a duplicate of it.
    for cols in spec.unique:
        for name in cols:
            if name not in t.c:
                raise ValueError(f"policies: {table} has no column {name!r}")
        key_cols = [t.c.source_system, *(t.c[n] for n in cols)]
        groups = (
            sa.select(*key_cols, sa.func.count().label("n"))
            .where(*(t.c[n].is_not(None) for n in cols))
            .group_by(*key_cols)
            .having(sa.func.count() > 1)
            .subquery()
        )
        n_groups = int(conn.execute(sa.select(sa.func.count()).select_from(groups)).scalar_one())
        if not n_groups:
            continue
        label = "+".join(cols)
        sample_rows = conn.execute(sa.select(groups).limit(SAMPLE)).all()
        samples = []
        for row in sample_rows:
            m = row._mapping
            item: dict[str, Any] = {"source_system": m["source_system"], "rows": int(m["n"])}
            if set(cols) & pii:
                # The key is personal data (e.g. an e-mail): name the records, never the value.
                ids = conn.execute(
                    sa.select(t.c.source_id)
                    .where(t.c.source_system == m["source_system"], *(t.c[n] == m[n] for n in cols))
                    .limit(10)
                ).scalars()
                item["source_ids"] = list(ids)
            else:
                item["key"] = {n: str(m[n]) for n in cols}
            samples.append(item)
        duplicates[label] = {"groups": n_groups, "sample": samples}
        problems.append(f"{n_groups} duplicate {label} value(s)")
    meta["duplicates"] = duplicates
    meta["unique_keys"] = ["source_id", *("+".join(k) for k in spec.unique)]
    meta["required"] = list(spec.required)
    if problems:
        return CheckOutcome.fail(check.severity, f"{table}: " + "; ".join(problems) + ".", **meta)
    return CheckOutcome.ok(f"{table}: keys present and unique ({meta['rows']} rows).", check.severity, **meta)


def numeric_id_types(table: str) -> dict[str, str]:
    """source_system -> numeric id type of ``table``'s source_id, where the contracts that declare one agree."""
    found: dict[str, set[str]] = {}
    for c in all_contracts():
        src = c.source_for("source_id") if c.target == table else None
        id_type = c.fields[src].id_type if src else None
        if id_type:
            found.setdefault(c.system, set()).add(id_type)
    return {
        s: t
        for s, types in sorted(found.items())
        if len(types) == 1 and (t := next(iter(types))) in id_rules.NUMERIC_TYPES
    }


def _numeric_twins(
    conn: sa.Connection,
    t: sa.Table,
    types: dict[str, str],
    odd_counts: dict[str, int],
    odd_sql: sa.TextClause,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Groups of stored ids that normalise to one key (twins), and the non-canonical ids (ids are not PII)."""
    groups: list[dict[str, Any]] = []
    odd_sample: list[dict[str, Any]] = []
    limited = False
    for system, n in odd_counts.items():
        odd = list(
            conn.execute(
                sa.select(t.c.source_id)
                .where(t.c.source_system == system, odd_sql)
                .order_by(t.c.source_id)
                .limit(TWIN_SCAN)
            ).scalars()
        )
        limited |= n > len(odd)
        canon, _ = id_rules.normalise(pd.Series(odd, dtype=pd.StringDtype("pyarrow")), types[system])
        members: dict[str, list[str]] = {}
        for stored, key in zip(odd, canon.astype(object).where(canon.notna(), None), strict=True):
            if len(odd_sample) < SAMPLE:
                odd_sample.append({"source_system": system, "source_id": stored, "canonical": key})
            if key is not None:
                members.setdefault(key, []).append(stored)
        wanted = sorted(members)
        for start in range(0, len(wanted), 500):
            for key in conn.execute(
                sa.select(t.c.source_id).where(
                    t.c.source_system == system, t.c.source_id.in_(wanted[start : start + 500])
                )
            ).scalars():
                members[key].append(key)
        groups += [
            {"source_system": system, "key": key, "source_ids": sorted(found)}
            for key, found in sorted(members.items())
            if len(found) > 1
        ]
    twins = {"groups": len(groups), "sample": groups[:SAMPLE], "scan_limited": limited}
    return twins, {"rows": sum(odd_counts.values()), "sample": odd_sample, "id_types": types}


def referential(conn: sa.Connection, table: str, policies: Policies) -> CheckOutcome:
    """Every reference from ``table`` (order line -> order, order -> customer, ...) points at an existing row."""
    refs = policies.integrity.references_from(table)
    if not refs:
        return CheckOutcome.ok(f"{table} has no references to check.")
    child = _table(table)
    failing = []
    meta: dict[str, Any] = {}
    for ref in refs:
        if ref.parent not in CANONICAL_TABLES or ref.column not in child.c:
            raise ValueError(f"policies: reference {ref.name} names an unknown table or column")
        parent = _table(ref.parent)
        col = child.c[ref.column]
        same_system = (
            parent.c.source_system == ref.parent_system
            if ref.parent_system
            else parent.c.source_system == child.c.source_system
        )
        orphan = sa.and_(
            col.is_not(None), col != "", ~sa.exists().where(same_system, parent.c.source_id == col)
        )
        n = int(conn.execute(sa.select(sa.func.count()).select_from(child).where(orphan)).scalar_one())
        distinct = int(conn.execute(sa.select(sa.func.count(sa.distinct(col))).where(orphan)).scalar_one())
        sample = [
            {"source_system": s, "source_id": i, ref.column: v}
            for s, i, v in conn.execute(
                sa.select(child.c.source_system, child.c.source_id, col)
                .where(orphan)
                .order_by(child.c.source_id)
                .limit(SAMPLE)
            )
        ]
        meta[ref.name] = {
            "orphans": n,
            "missing_parents": distinct,
            "severity": ref.severity,
            "sample": sample,
        }
        if n:
            failing.append((ref, n, distinct))
    if failing:
        text = "; ".join(
            f"{n} {table} row(s) point at {d} missing {ref.parent} id(s) via {ref.column}"
            for ref, n, d in failing
        )
        return CheckOutcome.fail(worst(ref.severity for ref, _, _ in failing), text + ".", **meta)
    return CheckOutcome.ok(
        f"Every reference from {table} resolves ({', '.join(r.name for r in refs)}).", **meta
    )
