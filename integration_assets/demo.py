"""``integration-assets demo``: generate a realistic sample and run the whole pipeline on the embedded default."""

from __future__ import annotations

import dataclasses
import json

import click

from integration_assets.settings import get_settings
from integration_assets.sync import SyncResult, ensure_dagster_home, render_summary, run_pending
from integration_assets.warehouse.db import ensure_schema


def run_demo(seed: int = 7) -> SyncResult:
    from integration_assets.samples import generate_batch_samples

    settings = get_settings()
    ensure_schema(settings.warehouse_url)
    ensure_dagster_home(settings)
    generate_batch_samples(settings.inbox_dir, seed=seed)
    # The demo wrote the files itself, so there is nothing to wait for.
    return run_pending(dataclasses.replace(settings, inbox_settle_seconds=0))


@click.command("demo")
@click.option("--seed", default=7, show_default=True, help="Seed of the sample generator.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(seed: int, as_json: bool) -> None:
    """Generate HubSpot/Odoo sample exports (with duplicates, updates, bad rows, one drifted file) and load them."""
    settings = get_settings()
    result = run_demo(seed)
    if as_json:
        click.echo(json.dumps(result.as_dict(), default=str))
        return
    render_summary(result, title="Demo: batch path (HubSpot + Odoo exports → warehouse)")
    click.echo(f"\nWarehouse: {settings.warehouse_url}")
    click.echo("Quarantined rows: integration-assets dlq list   ·   UI: make dev → http://127.0.0.1:3000")
