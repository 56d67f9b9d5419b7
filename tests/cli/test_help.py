"""``--help`` of the command line, of every group and of every command imports no Dagster: asking how to run
a command must not cost the seconds Dagster takes to import (the groups import it only inside commands)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from integration_assets.cli import COMMAND_GROUPS, main

# Runs `--help` of the group named in argv (or of the command line without one) and of each of its commands
# in one interpreter, then prints the exit codes and the Dagster modules that got imported.
SCRIPT = """
import json, sys
import click
from integration_assets.cli import main

group = sys.argv[1] if len(sys.argv) > 1 else None
calls = [[group]] if group else [[]]
if group:
    ctx = click.Context(main, info_name="integration-assets")
    command = main.get_command(ctx, group)
    if isinstance(command, click.Group):
        calls += [[group, name] for name in command.list_commands(ctx)]
codes = {}
for args in calls:
    try:
        main([*args, "--help"], prog_name="integration-assets")
    except SystemExit as exc:
        codes[" ".join(args)] = exc.code
dagster = sorted(m for m in sys.modules if m.split(".")[0] in ("dagster", "dagster_postgres", "dagster_webserver"))
print(json.dumps({"codes": codes, "dagster": dagster}))
"""


@pytest.mark.parametrize("group", [None, *sorted(COMMAND_GROUPS)], ids=lambda g: g or "top-level")
def test_help_imports_no_dagster(group: str | None) -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, *([group] if group else [])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["codes"] and set(out["codes"].values()) == {0}, out["codes"]
    assert out["dagster"] == [], f"--help of {group or 'the command line'} imported {out['dagster'][:5]}"


@pytest.mark.parametrize("name", sorted(COMMAND_GROUPS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    assert COMMAND_GROUPS[name][2] == command.get_short_help_str(limit=10_000)


def test_top_level_help_imports_no_command() -> None:
    script = (
        "import sys\nfrom integration_assets.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "mods = {m for m, _a, _h in __import__('integration_assets.cli', fromlist=['x']).COMMAND_GROUPS.values()}\n"
        "print(sorted(mods & set(sys.modules)), file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stderr.strip().splitlines()[-1] == "[]", res.stderr[-2000:]
    for name in COMMAND_GROUPS:
        assert name in res.stdout
