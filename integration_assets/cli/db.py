"""``integration-assets db …``: schema migrations, and pruning past the retention of policies.yaml."""

from __future__ import annotations

import json

import click

from integration_assets.settings import get_settings
from integration_assets.warehouse import db as wh


@click.group("db")
def db() -> None:
    """Warehouse schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (idempotent)."""
    wh.upgrade(revision=revision)
    click.echo(f"warehouse at {', '.join(sorted(wh.current_revisions())) or 'base'}")


@db.command("current")
def current() -> None:
    """Print the applied migration revision(s)."""
    click.echo(", ".join(sorted(wh.current_revisions())) or "base")


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def prune(dry_run: bool, as_json: bool) -> None:
    """Remove rows past policies.yaml's retention: the processed-events ledger and settled dead letters.

    Pending dead letters, canonical rows, the loads ledger and the dead-letter audit trail are never removed.
    """
    # lazy: keeps policies.yaml's pydantic models out of --help and `db current`, saves 960 ms
    from integration_assets.housekeeping import retention
    from integration_assets.policies import load_policies

    settings = get_settings()
    wh.ensure_schema(settings.warehouse_url)
    report = retention.prune(
        wh.get_engine(settings.warehouse_url), load_policies().retention, dry_run=dry_run
    )
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    verb = "would remove" if dry_run else "removed"
    for table, n in report.removed.items():
        click.echo(
            f"{table}: {verb} {n} row(s) older than {report.retention[table]} (before {report.cutoffs[table]})"
        )
