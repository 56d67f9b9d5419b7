"""``integration-assets privacy …``: GDPR erasure requests that arrive some other way than HubSpot's
``contact.privacyDeletion`` webhook (an e-mail to the DPO, a ticket), and the erasures' audit trail."""

from __future__ import annotations

import json
from typing import Any

import click

from integration_assets.settings import get_settings

SOURCES = {"hubspot": "contacts"}  # --source -> the table erased (HubSpot erases contacts only)


def _echo_report(doc: dict[str, Any]) -> None:
    verb = "would erase" if doc["dry_run"] else "erased"
    head = f"erasure {doc['erasure_id']}: " if doc["erasure_id"] is not None else "dry run: "
    click.echo(f"{head}{doc['source_system']} {doc['entity']} {doc['source_id']} ({doc['status']})")
    for store, n in doc["stores"].items():
        click.echo(f"  {store}: {verb} {n}")
    for f in doc["files"]:
        click.echo(f"  {f['store']}/{f['path']}: {f['records']} record(s), {f['values']} value(s)")
    for table, n in doc["also_found"].items():
        click.echo(
            f"  note: {n} row(s) of {table} (other records or systems) hold one of the values; not changed"
        )


@click.group("privacy")
def privacy() -> None:
    """GDPR erasure of a record's personal data (docs/PRIVACY.md)."""


@privacy.command("erase")
@click.option("--source", "source", type=click.Choice(sorted(SOURCES)), required=True, help="Source system.")
@click.option(
    "--id", "source_id", required=True, help="The record's id in the source (a HubSpot contact id)."
)
@click.option("--dry-run", is_flag=True, help="Count what would be erased; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def erase_command(source: str, source_id: str, dry_run: bool, as_json: bool) -> None:
    """Erase a record's personal data from the warehouse, dead letters, queue table, archived and rejected
    files and the alert log; later loads keep it erased. Prints what was erased per store (counts)."""
    # lazy: keeps the erasure (pandas, pandera) and SQLAlchemy out of --help, saves 3990 ms
    import sqlalchemy as sa

    from integration_assets.dead_letters.store import actor
    from integration_assets.erasure.audit import ErasureUnavailable
    from integration_assets.erasure.erase import erase
    from integration_assets.privacy.subjects import ErasureError
    from integration_assets.warehouse import db as wh

    settings = get_settings()
    wh.ensure_schema(settings.warehouse_url)
    try:
        e = erase(
            source,
            SOURCES[source],
            source_id,
            via="cli",
            ref=f"cli:{actor()}"[:255],
            dry_run=dry_run,
            settings=settings,
        )
    except ErasureError as exc:
        raise click.BadParameter(str(exc), param_hint="--id") from exc
    except (ErasureUnavailable, sa.exc.OperationalError) as exc:
        click.echo(
            f"erasure not done: {exc if isinstance(exc, ErasureUnavailable) else type(exc).__name__}",
            err=True,
        )
        raise SystemExit(75) from exc  # EX_TEMPFAIL, as `pull`: retry later
    doc = e.as_dict()
    if as_json:
        click.echo(json.dumps(doc, sort_keys=True))
    else:
        _echo_report(doc)


@privacy.command("resume")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per erasure finished.")
def resume_command(as_json: bool) -> None:
    """Finish erasures whose warehouse part committed but whose files were not done (a crash, a full disk);
    the drain also does this after its first batch."""
    # lazy: keeps the erasure (pandas, pandera) and SQLAlchemy out of --help, saves 2640 ms
    from integration_assets.erasure.erase import finish_pending
    from integration_assets.warehouse import db as wh

    settings = get_settings()
    wh.ensure_schema(settings.warehouse_url)
    for e in finish_pending(wh.get_engine(settings.warehouse_url), settings):
        if as_json:
            click.echo(json.dumps(e.as_dict(), sort_keys=True))
        else:
            _echo_report(e.as_dict())


@privacy.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
def list_command(as_json: bool) -> None:
    """The erasures done so far (the audit trail): when, how asked, what was erased where."""
    # lazy: keeps SQLAlchemy out of --help, saves 880 ms
    import sqlalchemy as sa

    from integration_assets.warehouse import db as wh
    from integration_assets.warehouse.schema import privacy_erasures as t

    settings = get_settings()
    wh.ensure_schema(settings.warehouse_url)
    with wh.get_engine(settings.warehouse_url).connect() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id)).all()
    for r in rows:
        doc = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r._mapping.items()}
        doc["stores"] = json.loads(r.stores or "{}")
        doc["files"] = json.loads(r.files or "[]")
        if as_json:
            click.echo(json.dumps(doc, sort_keys=True))
        else:
            click.echo(
                f"{r.id} {r.started_at:%Y-%m-%d %H:%M} {r.source_system} {r.entity} {r.source_id} "
                f"via {r.requested_via} {r.status}: "
                + (
                    ", ".join(f"{k}={v}" for k, v in doc["stores"].items() if isinstance(v, int) and v)
                    or "nothing held (the id stays suppressed)"
                )
            )
