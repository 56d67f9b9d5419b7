"""The ``integration-assets`` command line: one module per command group in this package, wired here by name.

Commands are imported only when used: ``sync`` on an inbox with nothing new must not pay for importing
Dagster, Starlette and the HTTP connectors, and ``--help`` imports no Dagster (tests/cli/test_help.py).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from integration_assets.loggers import dagster_fields
from integration_assets.observability.logging import configure_logging

# command name -> (module, attribute) of each sub-command or group. The demo lives in the sandbox, which
# runtime code never imports: it is named here, imported only when asked for.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "db": ("integration_assets.cli.db", "db"),
    "sync": ("integration_assets.cli.sync", "sync"),
    "demo": ("integration_assets.sandbox.demo", "demo"),
    "contracts": ("integration_assets.cli.contracts", "contracts"),
    "dlq": ("integration_assets.cli.dlq", "dlq"),
    "status": ("integration_assets.cli.status", "status"),
    "webhooks": ("integration_assets.cli.webhooks", "webhooks"),
    "pull": ("integration_assets.cli.pull", "pull"),
    "events": ("integration_assets.cli.events", "events"),
    "privacy": ("integration_assets.cli.privacy", "privacy"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMAND_GROUPS:
            return None
        module, attr = COMMAND_GROUPS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sync CRM, ERP, payments and shipping data into the warehouse, and review what was quarantined."""


def entry() -> None:
    """The console script: run the command, flush, and leave without the interpreter's teardown.

    Tearing down pandas, Arrow, SQLAlchemy and Dagster (a garbage collection over everything a large load
    touched) took ~0.7 s after a 1M-row sync had already printed its result. Every command has finished its
    work (commits, acks, archived files) when it returns, so nothing is lost by skipping it.
    """
    code: int = 0
    # JSON lines on stderr with the correlation ids of each load/drain (and of the jobs `sync` runs here).
    configure_logging(pre_chain=[dagster_fields])
    try:
        main()
    except SystemExit as exc:
        if isinstance(exc.code, int):
            code = exc.code
        elif exc.code is not None:
            print(exc.code, file=sys.stderr)
            code = 1
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                code = code or 1  # a closed or broken pipe: the output did not reach the reader
    os._exit(code)
