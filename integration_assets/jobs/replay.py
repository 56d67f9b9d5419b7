"""The ``replay_dead_letters`` job: replay dead letters from the Dagster UI launchpad or ``dlq replay``.

Rows and rejected files go back through the mapping and merge (``ingest.replay``); events go back on the
event queue under the same id (``events.replay``), and the next drain applies them; outbound writes run their
step again (``outbound.replay``).
"""

from dataclasses import replace

import dagster as dg
import sqlalchemy as sa

from integration_assets.assets.files import canonical_key
from integration_assets.checks.inrun import evaluate_checks
from integration_assets.dead_letters import queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.events.replay import replay_events
from integration_assets.ingest.replay import ReplayOutcome, replay
from integration_assets.observability.redact import redact_text
from integration_assets.outbound.replay import replay_outbound
from integration_assets.queue import open_queue
from integration_assets.resources import WarehouseResource
from integration_assets.settings import Settings
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters


def replay_all(
    flt: Filter,
    *,
    contract_id: str | None,
    dry_run: bool,
    who: str,
    run_id: str | None,
    settings: Settings,
    engine: sa.Engine,
) -> ReplayOutcome:
    """Row, file, event and outbound dead letters selected by ``flt``, each through its own path, in one
    outcome."""
    with engine.connect() as conn:
        matched = conn.execute(
            sa.select(dead_letters.c.id, dead_letters.c.stage).where(*replace(flt, limit=None).where())
        ).all()
    outbound_ids = tuple(int(r.id) for r in matched if r.stage == "outbound")
    others = tuple(int(r.id) for r in matched if r.stage != "outbound")
    if outbound_ids and not others:
        outcome = ReplayOutcome(dry_run=dry_run)
    else:
        # Outbound dead letters run their step again (outbound.replay), not through a load.
        outcome = replay(
            replace(flt, ids=others) if outbound_ids else flt,
            contract_id=contract_id,
            dry_run=dry_run,
            who=who,
            run_id=run_id,
            settings=settings,
            engine=engine,
        )
    _replay_events(flt, outcome, who=who, dry_run=dry_run, engine=engine)
    if outbound_ids:
        ob = replay_outbound(
            engine, replace(flt, ids=outbound_ids, limit=None), who=who, dry_run=dry_run, run_id=run_id
        )
        outcome.selected += ob.selected
        outcome.replayed.extend(ob.replayed)
        outcome.still_failing.update(ob.still_failing)
        outcome.skipped.update(ob.skipped)
    return outcome


def _replay_events(
    flt: Filter, outcome: ReplayOutcome, *, who: str, dry_run: bool, engine: sa.Engine
) -> None:
    """Event dead letters the load path skipped go back on the event queue."""
    if flt.stage not in (None, "event"):
        return
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(dead_letters.c.id, dead_letters.c.status).where(
                *replace(flt, stage="event", limit=None).where()
            )
        )
        events = {int(r.id) for r in rows if r.status == "pending"}
    pending = [i for i in outcome.skipped if i in events]  # ingest.replay left them to this path
    if not pending:
        return  # no event among them: the queue is not opened
    with open_queue(dead_letter_sink=store.write_event_dead_letters) as queue:
        ev = replay_events(
            engine, queue, replace(flt, ids=tuple(pending), status="pending"), who=who, dry_run=dry_run
        )
    for i in ev.replayed:
        outcome.skipped.pop(i, None)
        outcome.replayed.append(i)
    outcome.skipped.update(ev.skipped)


class ReplayConfig(dg.Config):
    """Which dead letters to replay. With no ids and no filter, every pending one is replayed."""

    ids: list[int] = []
    status: str = "pending"
    source: str | None = None
    entity: str | None = None
    stage: str | None = None
    check: str | None = None
    reason: str | None = None
    contract_id: str | None = None  # default: the newest contract version that fits the records
    # Safe by default: the launchpad shows what would happen, record by record; set false to replay.
    dry_run: bool = True
    actor: str = "dagster-ui"


RECORDS_SHOWN = 500  # rows of the per-record table; the counts cover every record


def _records(engine: sa.Engine, outcome: ReplayOutcome, *, dry_run: bool) -> list[dg.TableRecord]:
    """One row per selected dead letter: its key, what (would) happen, and why it would still fail."""
    verdicts: dict[int, tuple[str, str]] = {
        i: ("would load" if dry_run else "replayed", "") for i in outcome.replayed
    }
    verdicts |= {
        i: ("would still fail" if dry_run else "still failing", r) for i, r in outcome.still_failing.items()
    }
    verdicts |= {i: ("skipped", r) for i, r in outcome.skipped.items()}
    ids = sorted(verdicts)[:RECORDS_SHOWN]
    with engine.connect() as conn:
        rows = {
            int(r.id): r
            for r in conn.execute(
                sa.select(
                    dead_letters.c.id,
                    dead_letters.c.source_system,
                    dead_letters.c.entity,
                    dead_letters.c.stage,
                    dead_letters.c.natural_key,
                ).where(dead_letters.c.id.in_(ids))
            )
        }
    out = []
    for i in ids:
        row = rows.get(i)
        what, reason = verdicts[i]
        out.append(
            dg.TableRecord(
                {
                    "id": i,
                    "source": f"{row.source_system}/{row.entity}" if row else "",
                    "stage": (row.stage or "") if row else "",
                    "key": (row.natural_key or "")
                    if row
                    else "",  # ids and business keys, never personal data
                    "outcome": what,
                    "reason": redact_text(reason)[:500],
                }
            )
        )
    return out


RECORDS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("id", "int", description="dead letter id (dlq show ID)"),
        dg.TableColumn("source", "string"),
        dg.TableColumn("stage", "string"),
        dg.TableColumn("key", "string", description="the record's natural key"),
        dg.TableColumn("outcome", "string", description="would load | would still fail | skipped (dry run)"),
        dg.TableColumn("reason", "string", description="why it would still fail, or why it was skipped"),
    ]
)


@dg.op(
    description="Re-map stored raw records and rejected files through the current (or a chosen) contract and "
    "merge them; put dead-lettered events back on the event queue; run dead-lettered outbound steps again. "
    "dry_run (the default) changes nothing and lists, per record, what would happen.",
    tags={"integration/kind": "replay"},
)
def replay_dead_letters_op(
    context: dg.OpExecutionContext, config: ReplayConfig, warehouse: WarehouseResource
):  # type: ignore[no-untyped-def]
    flt = Filter(
        ids=tuple(config.ids),
        status=queries.status_of(config.status),
        source=config.source,
        entity=config.entity,
        stage=config.stage,
        check=config.check,
        reason=config.reason,
    )
    engine = warehouse.engine()
    outcome = replay_all(
        flt,
        contract_id=config.contract_id,
        dry_run=config.dry_run,
        who=config.actor,
        run_id=context.run_id,
        settings=warehouse.settings(),
        engine=engine,
    )
    summary = outcome.as_dict()
    context.log.info(
        "replay%s: %d selected, %d %s, %d still failing, %d skipped",
        " (dry run)" if config.dry_run else "",
        outcome.selected,
        len(outcome.replayed),
        "would load" if config.dry_run else "replayed",
        len(outcome.still_failing),
        len(outcome.skipped),
    )
    if not config.dry_run:
        for table in sorted(outcome.tables):
            # Yielded, not logged: stored before the checks below, which are tied to it.
            yield dg.AssetMaterialization(
                asset_key=canonical_key(table),
                description="rows loaded by a dead-letter replay",
                metadata={"replayed": len(outcome.replayed), "still_failing": len(outcome.still_failing)},
            )
        # Every materialization carries its checks' evaluations, as after a load (checks.inrun).
        evaluate_checks(context, [t for t in outcome.tables if t in CANONICAL_TABLES], warehouse)
    records = _records(engine, outcome, dry_run=config.dry_run)
    yield dg.Output(
        summary,
        metadata={
            "dry_run": config.dry_run,
            "selected": outcome.selected,
            "would_load" if config.dry_run else "replayed": len(outcome.replayed),
            "still_failing": len(outcome.still_failing),
            "skipped": len(outcome.skipped),
            "records": dg.MetadataValue.table(records, schema=RECORDS_SCHEMA),
            **(
                {"records_shown": f"first {RECORDS_SHOWN} of {outcome.selected}"}
                if outcome.selected > RECORDS_SHOWN
                else {}
            ),
        },
    )


@dg.job(
    name="replay_dead_letters",
    description="Replay dead letters (see config: ids, filters, contract_id, dry_run; a dry run by default).",
    executor_def=dg.in_process_executor,  # one op: no second process for a run whose work is one query
)
def replay_dead_letters() -> None:
    replay_dead_letters_op()
