"""Docs generated from code must match the code."""

from __future__ import annotations

from pathlib import Path

from integration_assets.contracts import dictionary

ROOT = Path(__file__).parent.parent


def test_data_dictionary_is_current() -> None:
    current = (ROOT / "docs" / "DATA_DICTIONARY.md").read_text(encoding="utf-8")
    assert current == dictionary.render(), "run: python -m integration_assets.contracts.dictionary"


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme
    # CI runs exactly the README's test command.
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert ci[-1] == "exec make test", ci
