"""Dagster's logger config: a run's log lines as the same JSON lines as the CLI's and the receiver's.

``dagster.yaml`` (``python_logs``) hands the project's ``logging.getLogger`` records to Dagster
(``managed_python_loggers``) and adds a handler rendering every INFO+ record of a run with
:class:`DagsterJsonFormatter` on stderr (``dagster_handler_config``): what ``context.log`` writes, Dagster's
own events at INFO, and the project's records with the ids bound by ``observability.logging`` (load id,
drain id) plus the run's own from the record's Dagster metadata (run id, job, step). Dagster's default
console logger keeps printing readable text on stdout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from integration_assets.observability.logging import JsonFormatter, installed_handler_level

__all__ = ["DagsterJsonFormatter", "OnceWithTheRootHandler", "dagster_fields"]

# What a Dagster log record carries in its ``dagster_meta`` extra that a reader correlates by.
_DAGSTER_IDS = ("run_id", "job_name", "step_key", "op_name")


def dagster_fields(event: dict[str, Any]) -> dict[str, Any]:
    """Lift the run's ids out of the record's Dagster metadata; the message is the one logged, without the
    ``job - run_id - step -`` prefix Dagster adds for its text loggers."""
    meta = event.pop("dagster_meta", None)
    if not isinstance(meta, Mapping):
        return event
    if meta.get("orig_message"):
        event["message"] = meta["orig_message"]
    for key in _DAGSTER_IDS:
        if meta.get(key) and key not in event:
            event[key] = meta[key]
    dagster_event = meta.get("dagster_event")
    if dagster_event is not None:
        event["dagster_event"] = dagster_event.event_type_value
    return event


class DagsterJsonFormatter(JsonFormatter):
    """:class:`JsonFormatter` for the records Dagster hands its handlers (``dagster.yaml`` names it)."""

    def __init__(self) -> None:
        super().__init__(pre_chain=[dagster_fields])


class OnceWithTheRootHandler(logging.Filter):
    """Each line once when a job runs inside a CLI command (``sync``): the project's records propagate to
    the root logger, whose JSON handler the CLI installed, so Dagster's handler leaves them to it, and
    ``context.log`` and Dagster's events pass at the level that handler shows (INTEGRATION_LOG_LEVEL). In a
    run worker (no root handler) everything passes. Dagster's event log is written apart and keeps it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        shown = installed_handler_level()
        if shown is None:
            return True
        return record.name == "dagster" and record.levelno >= shown
