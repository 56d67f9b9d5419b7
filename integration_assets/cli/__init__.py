"""The ``integration-assets`` command line: one module per command group in this package, wired here by name.

Commands are imported only when used: ``sync`` on an inbox with nothing new must not pay for importing
Dagster, Starlette and the HTTP connectors, and ``--help`` imports no Dagster (tests/cli/test_help.py).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings

import click

from integration_assets.loggers import dagster_fields
from integration_assets.observability.logging import configure_logging
from integration_assets.settings import get_settings

# command name -> (module, attribute, one-line help) of each sub-command or group. The help is repeated here so
# that `integration-assets --help` lists the commands without importing them (tests/cli/test_help.py keeps it
# equal to each command's own). The demo lives in the sandbox, which runtime code never imports: it is named
# here, imported only when asked for.
COMMAND_GROUPS: dict[str, tuple[str, str, str]] = {
    "backfill": (
        "integration_assets.cli.backfill",
        "backfill",
        "Launch a Dagster backfill of SYSTEM ENTITY's daily API-pull partitions from --from to --to (UTC days, "
        "both included), as the UI's Launch backfill does.",
    ),
    "db": ("integration_assets.cli.db", "db", "Warehouse schema (Alembic migrations)."),
    "sync": (
        "integration_assets.cli.sync",
        "sync",
        "Load every file waiting in the inbox (same assets as the sensor), then print what happened.",
    ),
    "demo": (
        "integration_assets.sandbox.demo",
        "demo",
        "Generate HubSpot/Odoo sample exports (with duplicates, updates, bad rows, one drifted file) and load "
        "them; then post signed Stripe/HubSpot/EasyPost sample webhooks to the receiver and drain them into "
        "the warehouse.",
    ),
    "contracts": (
        "integration_assets.cli.contracts",
        "contracts",
        "Mapping contracts (YAML, versioned per source system and entity).",
    ),
    "dlq": ("integration_assets.cli.dlq", "dlq", "Dead letters: quarantined rows, files and events."),
    "status": (
        "integration_assets.cli.status",
        "status",
        "Per source entity: last successful load, freshness, rows and quarantined rows in the last day, dead "
        "letters pending, failing checks and open alerts.",
    ),
    "webhooks": (
        "integration_assets.cli.webhooks",
        "webhooks",
        "Receive signed Stripe/HubSpot/EasyPost webhooks and enqueue them durably.",
    ),
    "pull": (
        "integration_assets.cli.pull",
        "pull",
        "Pull SYSTEM (hubspot or odoo) through its API into the inbox as JSONL, incrementally from the cursors.",
    ),
    "events": (
        "integration_assets.cli.events",
        "events",
        "Webhook events: drain the queue into the warehouse, replay dead-lettered events.",
    ),
    "outbound": (
        "integration_assets.cli.outbound",
        "outbound",
        "The outbound chain: deal won -> Odoo order -> EasyPost label -> write-back (status, run, trace).",
    ),
    "sql": (
        "integration_assets.cli.sql",
        "sql",
        "Run a read-only SQL query on the warehouse (SQLite or PostgreSQL) and print the rows.",
    ),
    "privacy": (
        "integration_assets.cli.privacy",
        "privacy",
        "GDPR erasure of a record's personal data (docs/PRIVACY.md).",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMAND_GROUPS:
            return None
        module, attr, _help = COMMAND_GROUPS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from COMMAND_GROUPS, so `--help` imports none of the commands."""
        limit = formatter.width - 6 - max(len(name) for name in COMMAND_GROUPS)
        rows = [(name, _short(COMMAND_GROUPS[name][2], limit)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _short(text: str, limit: int) -> str:
    """click's own shortening of a help text (what `Command.get_short_help_str` shows)."""
    return click.Command("_", help=text).get_short_help_str(limit)


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
    # JSON lines on stderr with the correlation ids of each load/drain (and of the jobs `sync` runs here). The
    # loggers keep INFO, so the event log of a job run in this process is complete; the terminal shows
    # INTEGRATION_LOG_LEVEL and up (WARNING by default: the command's own output is the summary).
    handler = configure_logging("INFO", pre_chain=[dagster_fields])
    # dagster.yaml's python_logs (how run logs become JSON lines) is "beta" in Dagster 1.13, which says so on
    # every instance load; the feature is pinned and tested here (tests/test_loggers.py).
    warnings.filterwarnings(
        "ignore", message="Handling yaml-defined logging configuration is currently in beta"
    )
    handler.setLevel(get_settings().log_level)
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
