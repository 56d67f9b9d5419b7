"""The canonical writer knows no privacy rules (warehouse is below privacy), so erased records stay erased
only if every module that stages canonical rows merges them through ``privacy.suppress``."""

from __future__ import annotations

import re
from pathlib import Path

import integration_assets

PACKAGE = Path(integration_assets.__file__).parent
# A canonical merge: ``stage.merge()`` or ``stage.merge(lock=…)`` (``drift.merge(other)`` is something else).
DIRECT_MERGE = re.compile(r"\.merge\((?:\)|lock=)")


def test_every_canonical_merge_goes_through_merge_keeping_erased() -> None:
    stagers = [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if "CanonicalStage(" in p.read_text(encoding="utf-8") and p != PACKAGE / "warehouse" / "writer.py"
    ]
    assert stagers, "no module stages canonical rows: this test no longer finds them"
    for path in stagers:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE.parent)
        assert "merge_keeping_erased(" in text, f"{where} stages canonical rows but never merges them"
        assert not DIRECT_MERGE.search(text), f"{where} merges without privacy.suppress.merge_keeping_erased"
