"""The ``tidy_inbox`` job: what the inbox sensor decided needs no load, moved by a run (the tick only decides).

Refused entries (symlinks, hidden names, stale temporary files) and files outside ``<system>/<entity>/`` of a
contract go to ``rejected/`` with a reason and a dead letter; a copy of content already loaded goes to the
archive as a duplicate. Loads left running by a process that is gone are marked abandoned first. The run
decides again from what the inbox holds when it starts (``ingest.archive.tidy``): an entry moved meanwhile
is not moved twice.
"""

import dagster as dg

from integration_assets.contracts.spec import known_entities
from integration_assets.ingest.archive import tidy
from integration_assets.ingest.inbox import abandon_dead_loads
from integration_assets.resources import WarehouseResource

TIDY_JOB = "tidy_inbox"


def known_folders() -> set[tuple[str, str]]:
    """The inbox folders of the contracts: (system, entity)."""
    return {(s, e) for s, e, _ in known_entities()}


@dg.op(
    description="Reject refused and misplaced inbox entries, archive copies of loaded content, mark the "
    "loads of dead processes abandoned.",
    tags={"integration/kind": "inbox"},
)
def tidy_inbox_op(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> dict:
    settings, engine = warehouse.settings(), warehouse.engine()
    abandoned = abandon_dead_loads(engine, settings)
    for load_id in abandoned:
        context.log.warning("load %s was left running by a process that is gone: marked abandoned", load_id)
    _, reports = tidy(settings, engine, known_folders, run_id=context.run_id)
    for r in reports:
        context.log.info("%s/%s %s: %s (%s)", r.source_system, r.entity, r.file_name, r.status, r.error)
    context.add_output_metadata(
        {
            "abandoned": len(abandoned),
            "rejected": sum(r.status == "rejected" for r in reports),
            "duplicates_archived": sum(r.status == "duplicate_file" for r in reports),
        }
    )
    return {"abandoned": abandoned, "moved": [r.as_dict() for r in reports]}


@dg.job(
    name=TIDY_JOB,
    description="Move the inbox entries that need no load (requested by inbox_sensor).",
    tags={"integration/kind": "inbox"},
)
def tidy_inbox() -> None:
    tidy_inbox_op()
