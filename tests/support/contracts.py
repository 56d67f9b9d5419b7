"""A writable copy of the shipped contracts, for tests that teach a contract a new value and replay."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from integration_assets.contracts.spec import CONTRACTS_DIR


@pytest.fixture
def contracts_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("INTEGRATION_CONTRACTS_DIR", str(root))
    return root


def teach_prospect(root: Path) -> None:
    """contacts_export v1 learns the lead status "Prospect" (the value the fixture's bad row carries)."""
    path = root / "hubspot" / "contacts_export.v1.yaml"
    text = path.read_text()
    assert "      Other: other\n" in text
    path.write_text(
        text.replace("      Other: other\n", "      Other: other\n      Prospect: opportunity\n", 1)
    )
