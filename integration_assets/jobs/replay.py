"""The ``replay_dead_letters`` job: replay quarantined records from the Dagster UI launchpad or the CLI."""

import dagster as dg

from integration_assets.assets.files import canonical_key
from integration_assets.dead_letters.replay import replay
from integration_assets.dead_letters.store import Filter
from integration_assets.resources import WarehouseResource


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
    dry_run: bool = False
    actor: str = "dagster-ui"


@dg.op(
    description="Re-map stored raw records through the current (or a chosen) contract and merge them.",
    tags={"integration/kind": "replay"},
)
def replay_dead_letters_op(
    context: dg.OpExecutionContext, config: ReplayConfig, warehouse: WarehouseResource
) -> dict:
    flt = Filter(
        ids=tuple(config.ids),
        status=config.status or None,
        source=config.source,
        entity=config.entity,
        stage=config.stage,
        check=config.check,
        reason=config.reason,
    )
    outcome = replay(
        flt,
        contract_id=config.contract_id,
        dry_run=config.dry_run,
        who=config.actor,
        run_id=context.run_id,
        settings=warehouse.settings(),
        engine=warehouse.engine(),
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
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=canonical_key(table),
                    description="rows loaded by a dead-letter replay",
                    metadata={"replayed": len(outcome.replayed), "still_failing": len(outcome.still_failing)},
                )
            )
    return summary


@dg.job(
    name="replay_dead_letters",
    description="Replay dead letters (see config: ids, filters, contract_id, dry_run).",
)
def replay_dead_letters() -> None:
    replay_dead_letters_op()
