"""``integration-assets pull hubspot|odoo``: pull through the API into the inbox, outside Dagster.

The same code path as the ``pull_hubspot`` / ``pull_odoo`` jobs (:func:`~integration_assets.connectors.landing.
pull_entity`), with the same cursors; ``integration-assets sync`` (or the ``inbox_sensor``) loads what landed.

Exit codes: 0 all entities pulled; 75 (EX_TEMPFAIL) a transient failure, run it again later (the cursors keep
what was landed); 1 a terminal failure (credentials, permissions, a spent daily quota): fix it first.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import click
import sqlalchemy as sa

from integration_assets.connectors._http import StatusRecorder
from integration_assets.connectors._retry import RetryBudget
from integration_assets.connectors.hubspot.client import HubSpotClient
from integration_assets.connectors.landing import RECORDS_PER_FILE, PullReport, Source, pull_entity
from integration_assets.connectors.odoo.client import OdooClient
from integration_assets.errors import TerminalError, TransientError
from integration_assets.quality.connector_health import warehouse_status_recorder
from integration_assets.settings import env, get_settings
from integration_assets.warehouse.db import ensure_schema, get_engine

log = logging.getLogger(__name__)

EX_TEMPFAIL = 75  # sysexits.h: temporary failure, try again later
SYSTEMS = ("hubspot", "odoo")


def _require(*names: str) -> dict[str, str]:
    values = {n: env(n) or "" for n in names}
    missing = [n for n, v in values.items() if not v]
    if missing:
        raise click.UsageError(f"set {', '.join(missing)} (see .env.example)")
    return values


def build_source(system: str, *, recorder: StatusRecorder | None, budget: RetryBudget) -> Source:
    """The live connector for ``system`` configured from the environment (secrets only from there)."""
    if system == "hubspot":
        v = _require("HUBSPOT_ACCESS_TOKEN")
        return HubSpotClient(
            v["HUBSPOT_ACCESS_TOKEN"],
            get_settings().hubspot_base_url,
            recorder=recorder,
            budget=budget,
        )
    v = _require("ODOO_URL", "ODOO_DB", "ODOO_USERNAME", "ODOO_API_KEY")
    return OdooClient(
        v["ODOO_URL"], v["ODOO_DB"], v["ODOO_USERNAME"], v["ODOO_API_KEY"], recorder=recorder, budget=budget
    )


def _recorder(system: str) -> StatusRecorder | None:
    """Counts for the connector health alert, if the warehouse is there; a pull does not need it otherwise."""
    url = get_settings().warehouse_url
    try:
        ensure_schema(url)
    except sa.exc.SQLAlchemyError as exc:
        log.warning(
            "warehouse unavailable (%s): HTTP statuses of this pull are not recorded", type(exc).__name__
        )
        return None
    return warehouse_status_recorder(system, get_engine(url))


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {text!r}", param_hint="--since") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@click.command("pull")
@click.argument("system", type=click.Choice(SYSTEMS))
@click.option(
    "--entity",
    "entities",
    multiple=True,
    help="Only this entity (repeatable): contacts, companies, deals; res.partner, sale.order, …",
)
@click.option(
    "--since", help="Pull records modified at or after this ISO-8601 time instead of from the cursor."
)
@click.option("--full", is_flag=True, help="Pull every record, ignoring the cursor.")
@click.option(
    "--records-per-file",
    type=click.IntRange(1),
    default=RECORDS_PER_FILE,
    show_default=True,
    help="Records per JSONL file landed in the inbox.",
)
@click.option(
    "--retry-budget",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="Retries this pull may spend across all of its calls.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def pull(
    system: str,
    entities: tuple[str, ...],
    since: str | None,
    full: bool,
    records_per_file: int,
    retry_budget: int,
    as_json: bool,
) -> None:
    """Pull SYSTEM (hubspot or odoo) through its API into the inbox as JSONL, incrementally from the cursors.

    Then `integration-assets sync` (or the inbox sensor) loads the files with the `*.api` contracts.
    """
    since_ts = _since(since)
    if full and since_ts:
        raise click.UsageError("--full and --since exclude each other")
    source = build_source(system, recorder=_recorder(system), budget=RetryBudget(retry_budget))
    unknown = [e for e in entities if e not in source.entities]
    if unknown:
        raise click.UsageError(
            f"unknown {system} entity {', '.join(unknown)}; one of {', '.join(source.entities)}"
        )
    reports: list[PullReport] = []
    failure: tuple[str, Exception] | None = None
    try:
        for entity in entities or source.entities:
            try:
                reports.append(
                    pull_entity(source, entity, since=since_ts, full=full, records_per_file=records_per_file)
                )
            except TerminalError as exc:
                failure = ("terminal", exc)
                break
            except TransientError as exc:
                failure = ("transient", exc)
                break
    finally:
        source.close()  # type: ignore[attr-defined]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": failure is None,
                    "pulls": [r.as_dict() for r in reports],
                    "error": None if failure is None else {"kind": failure[0], "message": str(failure[1])},
                }
            )
        )
    else:
        for r in reports:
            click.echo(
                f"{r.system}/{r.entity}: {r.mode} pull, {r.records} record(s) in {len(r.files)} file(s), "
                f"{r.skipped} already landed; watermark {r.watermark_before} -> {r.watermark_after}"
            )
        if failure:
            click.echo(f"{system}: {failure[0]} failure: {failure[1]}", err=True)
    if failure:
        sys.exit(EX_TEMPFAIL if failure[0] == "transient" else 1)
