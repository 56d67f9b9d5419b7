"""No module-level name of ours shadows a public Dagster name (docs/ARCHITECTURE.md, "Names").

A reader who meets ``FreshnessPolicy`` or ``RetryPolicy`` in this code base must be able to assume it is
Dagster's. Nested classes (pandera's ``class Config`` inside a model) are not names a module exports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg

PACKAGE = Path(__file__).parent.parent / "integration_assets"


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_no_module_level_name_shadows_dagster() -> None:
    dagster_names = {n for n in dir(dg) if not n.startswith("_") and n[0].isupper()}
    clashes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in sorted(_top_level_names(tree) & dagster_names):
            clashes.append(f"{path.relative_to(PACKAGE.parent)}: {name}")
    assert not clashes, "names that shadow Dagster's:\n" + "\n".join(clashes)


def test_the_check_sees_a_clash() -> None:
    tree = ast.parse("class FreshnessPolicy:\n    pass\nRetryPolicy = object\nx: int = 1\n")
    assert {"FreshnessPolicy", "RetryPolicy"} <= _top_level_names(tree)
