"""The inbox sensor, evaluated through its cursor against a real instance and warehouse."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from integration_assets.settings import get_settings

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def _drop(name: str, folder: str = "hubspot/contacts") -> Path:
    inbox = get_settings().inbox_dir / folder
    inbox.mkdir(parents=True, exist_ok=True)
    dest = inbox / name
    shutil.copy(FIXTURE, dest)
    return dest


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    from integration_assets.sensors.inbox import inbox_run_requests

    return inbox_run_requests(dg.build_sensor_context(instance=instance, cursor=cursor))


def _run(instance: dg.DagsterInstance, req: dg.RunRequest) -> None:
    from integration_assets.definitions import defs

    run = defs.resolve_job_def(req.job_name).execute_in_process(
        instance=instance, run_config=req.run_config, tags=req.tags
    )
    assert run.success


@pytest.mark.usefixtures("warehouse_url")
def test_one_run_per_content_and_renamed_copy_loads_once() -> None:
    from integration_assets.definitions import defs

    _drop("export-a.csv")
    _drop("export-a-renamed.csv")
    with dg.instance_for_test() as instance:
        result = _tick(instance, None)
        assert len(result.run_requests) == 1  # identical content: one run key
        req = result.run_requests[0]
        assert req.run_key.startswith("hubspot/contacts:")
        assert req.tags["integration/entity"] == "hubspot.contacts"
        run = defs.resolve_job_def(req.job_name).execute_in_process(
            instance=instance, run_config=req.run_config, tags=req.tags
        )
        assert run.success
        mat = run.asset_materializations_for_node("warehouse__contacts")[0]
        assert mat.metadata["rows_read"].value == 6
        assert mat.metadata["accounting_balanced"].value is True

        # Next tick: the renamed copy is recognised by content; the tick moves nothing and asks for a tidy
        # run, which archives it without a load.
        again = _tick(instance, result.cursor)
        assert [r.job_name for r in again.run_requests] == ["tidy_inbox"]
        assert any(get_settings().inbox_dir.rglob("*.csv"))
        _run(instance, again.run_requests[0])
    settings = get_settings()
    assert not any(settings.inbox_dir.rglob("*.csv"))
    archived = sorted(p.name for p in settings.archive_dir.rglob("*.csv"))
    assert len(archived) == 2 and all("export-a" in n for n in archived)


@pytest.mark.usefixtures("warehouse_url")
def test_file_in_unknown_folder_is_rejected_with_reason() -> None:
    _drop("stray.csv", folder="hubspot/not_an_entity")
    with dg.instance_for_test() as instance:
        result = _tick(instance, None)
        assert [r.job_name for r in result.run_requests] == ["tidy_inbox"]  # the tick moves nothing
        assert (get_settings().inbox_dir / "hubspot" / "not_an_entity" / "stray.csv").exists()
        _run(instance, result.run_requests[0])
    rejected = get_settings().rejected_dir / "hubspot" / "not_an_entity"
    assert (rejected / "stray.csv").exists()
    reason = (rejected / "stray.csv.reason.json").read_text()
    assert "wrong_folder" in reason and "hubspot/contacts" in reason


@pytest.mark.usefixtures("warehouse_url")
def test_empty_inbox_skips() -> None:
    with dg.instance_for_test() as instance:
        result = _tick(instance, None)
    assert result.run_requests == [] and result.skip_reason


@pytest.mark.usefixtures("warehouse_url")
def test_a_tick_moves_nothing_and_one_tidy_run_at_a_time() -> None:
    hidden = get_settings().inbox_dir / "hubspot" / "contacts" / ".hidden.csv"
    hidden.parent.mkdir(parents=True, exist_ok=True)
    hidden.write_text("x\n")
    with dg.instance_for_test() as instance:
        first = _tick(instance, None)
        [req] = first.run_requests
        assert req.job_name == "tidy_inbox" and hidden.exists()
        instance.create_run_for_job(
            job_def=_job("tidy_inbox"), run_config=req.run_config, tags=req.tags
        )  # queued, not finished: the next tick waits for it
        assert _tick(instance, first.cursor).run_requests == []
    assert hidden.exists()


def _job(name: str) -> dg.JobDefinition:
    from integration_assets.definitions import defs

    return defs.resolve_job_def(name)
