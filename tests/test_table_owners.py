"""One writer per table (docs/ARCHITECTURE.md, "One home per concept"): a table with a state machine or a
ledger is inserted into, updated and deleted from by its owner module(s) only; everyone else calls them.

Static: every module of the package (migrations excluded) is parsed and its writes are found by shape —
``sa.insert(t)`` / ``sa.update(t)`` / ``sa.delete(t)`` (and the dialects' ``insert``), ``t.insert()`` /
``t.update()`` / ``t.delete()``, a helper whose name contains ``insert`` called with ``t``, and raw SQL
``INSERT INTO t`` / ``UPDATE t`` / ``DELETE FROM t`` passed to a call — where ``t`` is a table imported from
``warehouse.schema`` (or a local name bound to one, ``t = dead_letters``). A write through a table taken
from a loop or a mapping (the erasure's generic value scrub, the canonical tables) is not seen: those are
the known exceptions listed in docs/ARCHITECTURE.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

import integration_assets
from integration_assets.warehouse import schema

PACKAGE = Path(integration_assets.__file__).parent

# table -> the modules (relative to the package) that may write it.
OWNERS: dict[str, set[str]] = {
    "loads": {"warehouse/ledger.py"},
    "schema_drift": {"warehouse/schema_drift.py"},
    "dead_letters": {"dead_letters/store.py"},
    "dead_letter_actions": {"dead_letters/store.py"},
    "event_queue": {"queue/sql.py", "queue/sql_publish.py", "queue/sql_waiting.py"},
    "processed_events": {"events/ledger.py"},
    "alert_incidents": {"alerts/incidents.py"},
    "alert_deliveries": {"alerts/incidents.py"},
    "reconciliation_mismatches": {"quality/mismatches.py"},
    "connector_http_stats": {"quality/connector_health.py"},
    "privacy_erasures": {"erasure/audit.py"},
    "outbox": {"warehouse/outbox.py"},
    "outbound_ledger": {"outbound/ledger.py"},
    "outbound_chains": {"outbound/ledger.py"},
    "api_budget": {"warehouse/api_budget.py"},
}

WRITE_METHODS = {"insert", "update", "delete"}
WRITE_FUNCTIONS = WRITE_METHODS | {"pg_insert", "sqlite_insert"}
RAW_SQL = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?([a-z_]+)\b")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.relative_to(PACKAGE).parts)


def _table_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> table name: tables imported from ``warehouse.schema`` and names bound to one of them."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "integration_assets.warehouse.schema"
        ):
            for a in node.names:
                table = getattr(schema, a.name, None)
                if isinstance(table, sa.Table):
                    names[a.asname or a.name] = table.name
    changed = True
    while changed:  # t = dead_letters; u = t
        changed = False
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Name)
                and node.value.id in names
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id not in names
            ):
                names[node.targets[0].id] = names[node.value.id]
                changed = True
    return names


def _func_name(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def writes(tree: ast.Module) -> list[tuple[str, int]]:
    """(table, line) of every write the module makes to a table it imported."""
    names = _table_names(tree)
    found: list[tuple[str, int]] = []

    def table_of(node: ast.AST) -> str | None:
        return names.get(node.id) if isinstance(node, ast.Name) else None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fname = _func_name(node)
        f = node.func
        # t.insert() / t.update() / t.delete()
        if isinstance(f, ast.Attribute) and f.attr in WRITE_METHODS and (t := table_of(f.value)):
            found.append((t, node.lineno))
            continue
        # sa.insert(t), postgresql.insert(t), pg_insert(t), _insert_ignore(engine, t), ...
        if fname and (fname in WRITE_FUNCTIONS or "insert" in fname.lower()):
            for arg in node.args:
                if t := table_of(arg):
                    found.append((t, node.lineno))
        # raw SQL passed to a call: sa.text("UPDATE t ..."), conn.exec_driver_sql("INSERT INTO t ...")
        for arg in node.args:
            for sub in ast.walk(arg):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    found += [(m, node.lineno) for m in RAW_SQL.findall(sub.value) if m in OWNERS]
    return found


def _tables_in_schema() -> set[str]:
    return {t.name for t in schema.metadata.sorted_tables}


def test_every_owned_table_exists() -> None:
    assert set(OWNERS) <= _tables_in_schema()
    for modules in OWNERS.values():
        for m in modules:
            assert (PACKAGE / m).is_file(), m


def test_only_the_owner_writes_a_table() -> None:
    violations = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for table, line in writes(ast.parse(path.read_text(encoding="utf-8"))):
            owners = OWNERS.get(table)
            if owners is not None and rel not in owners:
                violations.append(f"{rel}:{line} writes {table} (owner: {', '.join(sorted(owners))})")
    assert not violations, "\n".join(violations)


def test_the_owners_are_found_writing() -> None:
    """The detector sees the owners' writes (else the test above would pass vacuously)."""
    seen: dict[str, set[str]] = {}
    for path in _modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for table, _ in writes(ast.parse(path.read_text(encoding="utf-8"))):
            seen.setdefault(table, set()).add(rel)
    assert set(OWNERS) <= set(seen), sorted(set(OWNERS) - set(seen))


@pytest.mark.parametrize(
    "source",
    [
        "from integration_assets.warehouse.schema import dead_letters\nsa.delete(dead_letters)",
        "from integration_assets.warehouse.schema import dead_letters\ndead_letters.update()",
        "from integration_assets.warehouse.schema import dead_letters as d\nt = d\nt.insert()",
        "from integration_assets.warehouse.schema import dead_letters\n_insert_for(conn, dead_letters)",
        "conn.exec_driver_sql('DELETE FROM dead_letters WHERE 1')",
    ],
)
def test_the_detector_catches(source: str) -> None:
    assert [t for t, _ in writes(ast.parse(source))] == ["dead_letters"]


@pytest.mark.parametrize(
    "source",
    [
        "from integration_assets.warehouse.schema import dead_letters\nsa.select(dead_letters)",
        "seen = set()\nseen.update(x)",
        "out = []\nout.insert(0, x)",
        '"""Rows are never UPDATE dead_letters here."""',
    ],
)
def test_the_detector_ignores(source: str) -> None:
    assert writes(ast.parse(source)) == []
