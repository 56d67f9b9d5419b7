"""``integration-assets db …``: schema migrations."""

from __future__ import annotations

import click

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
