"""The ``integration-assets`` command line. Each layer contributes its own click group; this file wires them."""

from __future__ import annotations

import importlib

import click

# (module, attribute) of each sub-command group; a layer adds itself here.
COMMAND_GROUPS: list[tuple[str, str]] = [
    ("integration_assets.warehouse.cli", "db"),
    ("integration_assets.sync", "sync"),
    ("integration_assets.demo", "demo"),
    ("integration_assets.contracts.cli", "contracts"),
    ("integration_assets.dead_letters.cli", "dlq"),
    ("integration_assets.status", "status"),
    ("integration_assets.webhooks.cli", "webhooks"),
    ("integration_assets.connectors.cli", "pull"),
    ("integration_assets.events.cli", "events"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sync CRM, ERP, payments and shipping data into the warehouse, and review what was quarantined."""


for _module, _attr in COMMAND_GROUPS:
    main.add_command(getattr(importlib.import_module(_module), _attr))
