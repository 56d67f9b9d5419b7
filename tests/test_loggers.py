"""Dagster runs log the same JSON lines as the CLI: the run's ids from Dagster, the load's from the code."""

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from integration_assets.loggers import dagster_fields
from integration_assets.observability.logging import configure_logging, correlation

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("integration_assets.tests.loggers")


@dg.op
def work(context: dg.OpExecutionContext) -> None:
    with correlation(load_id="ld_test_1", source_system="hubspot", entity="contacts"):
        log.info("merged %d rows for %s", 3, "jane.doe@example.com")
        log.debug("not shown")
    context.log.info("from context.log")


@dg.job
def logging_job() -> None:
    work()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("config", ["dagster.yaml", "docs/dagster.postgres.yaml"])
def test_a_run_logs_json_lines_with_run_and_load_ids(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_env: Path
) -> None:
    # dagster.yaml's python_logs: the project's loggers and Dagster's go through DagsterJsonFormatter.
    home = tmp_path / "home"
    home.mkdir()
    if config == "dagster.yaml":
        shutil.copy(REPO / config, home / "dagster.yaml")
    else:  # the production template's logging section on the embedded storage
        text = (REPO / config).read_text()
        (home / "dagster.yaml").write_text(text[text.index("python_logs:") :])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = logging_job.execute_in_process(instance=instance)
    assert result.success
    lines = json_lines(capsys.readouterr().err)
    [mine] = [x for x in lines if x["message"].startswith("merged 3 rows")]
    assert mine["message"] == "merged 3 rows for [REDACTED:email]"
    assert (mine["run_id"], mine["load_id"], mine["entity"]) == (result.run_id, "ld_test_1", "contacts")
    assert (mine["job_name"], mine["step_key"], mine["level"]) == ("logging_job", "work", "INFO")
    assert "dagster_meta" not in mine
    [ctx] = [x for x in lines if x["message"] == "from context.log"]
    assert ctx["run_id"] == result.run_id and "load_id" not in ctx
    assert not [x for x in lines if x["message"] == "not shown"]


def test_a_job_inside_a_cli_command_logs_each_line_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_env: Path
) -> None:
    # `sync` runs jobs in its own process, where the CLI's root handler already writes the project's lines.
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    handler = configure_logging(pre_chain=[dagster_fields])  # as cli.entry does
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = logging_job.execute_in_process(instance=instance)
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.success
    lines = json_lines(capsys.readouterr().err)
    [mine] = [x for x in lines if x["message"].startswith("merged 3 rows")]
    assert (mine["load_id"], mine["run_id"], mine["step_key"]) == ("ld_test_1", result.run_id, "work")
    assert "logging_job" not in mine["message"]
    [ctx] = [x for x in lines if x["message"] == "from context.log"]
    assert ctx["run_id"] == result.run_id


def test_inside_a_cli_command_the_terminal_level_applies_and_the_event_log_keeps_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_env: Path
) -> None:
    # The CLI's default: INFO records are made (the event log needs them) but not shown on the terminal.
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    handler = configure_logging("INFO", pre_chain=[dagster_fields])
    handler.setLevel("WARNING")  # as cli.entry does with INTEGRATION_LOG_LEVEL unset
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = logging_job.execute_in_process(instance=instance)
            stored = [e.message for e in instance.all_logs(result.run_id)]
    finally:
        logging.getLogger().removeHandler(handler)
    assert result.success
    shown = json_lines(capsys.readouterr().err)
    assert [x for x in shown if x["level"] == "INFO"] == []
    assert any("from context.log" in m for m in stored)
    assert any("merged 3 rows" in m for m in stored)
