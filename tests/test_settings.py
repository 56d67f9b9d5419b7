"""Config lives in one place: every variable the code reads is registered, documented and in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

from integration_assets.settings import ENV_VARS, get_settings, render_env_example

ROOT = Path(__file__).parent.parent


def _env_example_names() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line)
        if m:
            names.add(m.group(1))
    return names


def _names_read_in_code() -> set[str]:
    pattern = re.compile(
        r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|EnvVar\()\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    found = set()
    for path in (ROOT / "integration_assets").rglob("*.py"):
        found.update(pattern.findall(path.read_text()))
    return found


def test_every_registered_variable_is_in_env_example() -> None:
    assert set(ENV_VARS) <= _env_example_names()
    assert (ROOT / ".env.example").read_text() == render_env_example(), (
        "python -m integration_assets.settings > .env.example"
    )


def test_code_reads_only_registered_variables() -> None:
    unregistered = _names_read_in_code() - set(ENV_VARS)
    assert not unregistered, f"register these in settings.ENV_VARS and .env.example: {sorted(unregistered)}"


def test_defaults_live_under_the_data_dir(isolated_env: Path) -> None:
    s = get_settings()
    assert s.warehouse_url == f"sqlite:///{isolated_env.resolve() / 'warehouse.db'}"
    assert s.inbox_dir == isolated_env.resolve() / "inbox"
    assert s.queue_url == "sql"
