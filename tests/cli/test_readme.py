"""The README's command list names every command the CLI has."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from integration_assets.cli import COMMAND_GROUPS

README = Path(__file__).parent.parent.parent / "README.md"


def test_readme_lists_every_command() -> None:
    text = README.read_text(encoding="utf-8")
    missing = []
    for name, (module, attr, _help) in sorted(COMMAND_GROUPS.items()):
        command = getattr(importlib.import_module(module), attr)
        subs = sorted(command.commands) if isinstance(command, click.Group) else [""]
        missing += [
            f"{name} {sub}".strip() for sub in subs if f"integration-assets {name} {sub}".strip() not in text
        ]
    assert not missing, f"README.md's command list lacks: {missing}"
