"""Running the real code location's jobs and checks in-process, for the check and alert-sensor tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from integration_assets.assets.files import job_name, raw_op_name
from integration_assets.settings import get_settings

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def drop(name: str = "contacts.csv", source: Path = FIXTURE, folder: str = "hubspot/contacts") -> Path:
    inbox = get_settings().inbox_dir / folder
    inbox.mkdir(parents=True, exist_ok=True)
    dest = inbox / name
    shutil.copy(source, dest)
    return dest


def ingest(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    files: Iterable[Path],
    system: str = "hubspot",
    entity: str = "contacts",
) -> dg.ExecuteInProcessResult:
    """The entity's ingest job (landing, load and every check on the canonical asset), as the sensor runs it."""
    return defs.resolve_job_def(job_name(system, entity)).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {raw_op_name(system, entity): {"config": {"files": [str(f) for f in files]}}}},
    )


def run_checks(
    defs: dg.Definitions, instance: dg.DagsterInstance, keys: Iterable[dg.AssetCheckKey]
) -> dg.ExecuteInProcessResult:
    """Only the given checks (like "Execute checks" in the UI)."""
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*keys))
    only = dg.Definitions(
        assets=list(defs.assets or []),
        asset_checks=list(defs.asset_checks or []),
        jobs=[job],
        resources=defs.resources,
    )
    return only.resolve_job_def("checks_only").execute_in_process(instance=instance, raise_on_error=False)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}


def check_key(table: str, name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(["warehouse", table]), name)


# The code location a test loads into an in-process daemon workspace (module tests.checks.support,
# attribute LOCATION): the test sets it to the Definitions it built, e.g. with its own policies file.
LOCATION: dg.Definitions | None = None
