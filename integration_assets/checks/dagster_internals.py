"""The one module that touches Dagster internals (``dagster._core``, ``dagster._daemon``, ``dagster._time``).

Open-source Dagster has no public API to read asset check evaluations or freshness states for alerting
(docs/DAGSTER.md §2, §3): we read the instance's event-log storage the way the UI does. Everything here is small,
typed and returns plain values, so a Dagster upgrade that moves these internals touches only this file
(tested by tests/checks and tests/sensors/test_alerts.py).

Used by the asset checks (previous evaluation time), the alert sensors (check and freshness states), the
``status`` command, and the tests (one FreshnessDaemon evaluation through the daemon's own code path).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as RecordStatus
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._time import get_current_datetime

CheckStatus = Literal["passed", "failed", "execution_failed", "skipped", "in_progress"]
FreshnessLevel = Literal["PASS", "WARN", "FAIL", "UNKNOWN", "NOT_APPLICABLE"]


def now() -> datetime:
    """Dagster's clock (UTC): the one ``dagster._core.test_utils.freeze_time`` moves in tests."""
    return get_current_datetime()


def _plain(value: Any) -> Any:
    """A metadata value as plain JSON-able Python."""
    inner = getattr(value, "value", value)
    if isinstance(inner, Mapping):
        return {str(k): _plain(v) for k, v in inner.items()}
    if isinstance(inner, list | tuple):
        return [_plain(v) for v in inner]
    if inner is None or isinstance(inner, str | int | float | bool):
        return inner
    return str(inner)


@dataclass(frozen=True)
class CheckState:
    """The latest evaluation of one asset check, resolved the way the UI shows it."""

    key: dg.AssetCheckKey
    record_id: int
    status: CheckStatus
    run_id: str
    at: datetime
    severity: Literal["WARN", "ERROR"] | None = None
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str:
        """Changes whenever the evaluation changes (a new record, or a planned one completing)."""
        return f"{self.record_id}:{self.status}"


def latest_check_states(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, CheckState]:
    """The latest evaluation of every check in ``keys`` that ever ran (one storage query for all of them).

    A record stays PLANNED until its result arrives; like the UI, a planned record whose run has finished is
    ``execution_failed`` (run failed: the check raised or was never reached) or ``skipped`` (run succeeded,
    the check was not executed), otherwise ``in_progress``.
    """
    if not keys:
        return {}
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))
    out: dict[dg.AssetCheckKey, CheckState] = {}
    for key, rec in records.items():
        at = datetime.fromtimestamp(rec.create_timestamp, UTC)
        if rec.status == RecordStatus.PLANNED:
            run = instance.get_run_by_id(rec.run_id)
            if run is None:
                status: CheckStatus = "skipped"
            elif not run.is_finished:
                status = "in_progress"
            else:
                status = "execution_failed" if run.status == dg.DagsterRunStatus.FAILURE else "skipped"
            out[key] = CheckState(key, rec.id, status, rec.run_id, at)
            continue
        evaluation = rec.evaluation
        severity = evaluation.severity.value if evaluation is not None else None
        metadata = {k: _plain(v) for k, v in (evaluation.metadata or {}).items()} if evaluation else {}
        status = "passed" if rec.status == RecordStatus.SUCCEEDED else "failed"
        if status == "failed" and metadata.get("skipped") is True:
            status = "skipped"  # our "not evaluated" result (e.g. a table that does not exist yet)
        out[key] = CheckState(
            key,
            rec.id,
            status,
            rec.run_id,
            at,
            severity,  # type: ignore[arg-type]
            evaluation.description if evaluation else None,
            metadata,
        )
    return out


def planned_in_run(
    instance: dg.DagsterInstance, run_id: str, keys: Sequence[dg.AssetCheckKey]
) -> list[dg.AssetCheckKey]:
    """The checks among ``keys`` that run ``run_id`` planned and has not evaluated yet (their record is
    PLANNED): a run that skips their step would leave them "skipped", hiding the last real evaluation."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))
    return [k for k, rec in records.items() if rec.run_id == run_id and rec.status == RecordStatus.PLANNED]


def evaluation(
    instance: dg.DagsterInstance,
    key: dg.AssetCheckKey,
    *,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    description: str | None,
    metadata: Mapping[str, Any],
    blocking: bool,
) -> dg.AssetCheckEvaluation:
    """An evaluation of ``key`` tied to the asset's latest materialization (what the UI matches it against),
    for an op that evaluates checks itself rather than in the check's own step."""
    target = None
    asset_records = instance.get_asset_records([key.asset_key])
    latest = asset_records[0].asset_entry.last_materialization_record if asset_records else None
    if latest is not None:  # the record the UI compares an evaluation with
        target = AssetCheckEvaluationTargetMaterializationData(
            storage_id=latest.storage_id,
            run_id=latest.event_log_entry.run_id,
            timestamp=latest.event_log_entry.timestamp,
        )
    return dg.AssetCheckEvaluation(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=passed,
        metadata=dict(metadata),
        target_materialization_data=target,
        severity=severity,
        description=description,
        blocking=blocking,
    )


def last_evaluated(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, float | None]:
    """When each check's latest evaluation was recorded (epoch seconds); None when its latest record never
    completed (planned, skipped, crashed). Checks never run are absent."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))
    return {
        k: (rec.event.timestamp if rec.event is not None and rec.status in _COMPLETED else None)
        for k, rec in records.items()
    }


_COMPLETED = frozenset(COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)  # succeeded or failed


def last_materialized(instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]) -> dict[dg.AssetKey, float]:
    """The latest materialization time of each asset that has one (epoch seconds), in one query."""
    return {
        r.asset_entry.asset_key: r.asset_entry.last_materialization_record.timestamp
        for r in instance.get_asset_records(list(keys))
        if r.asset_entry.last_materialization_record is not None
    }


def previous_evaluation_time(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, *, exclude_run_id: str | None = None
) -> datetime | None:
    """When ``key`` last completed an evaluation in another run (for "new since the last check")."""
    history = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=5, status=set(COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
    )
    for rec in history:
        if rec.run_id != exclude_run_id:
            return datetime.fromtimestamp(rec.create_timestamp, UTC)
    return None


@dataclass(frozen=True)
class FreshnessView:
    key: dg.AssetKey
    state: FreshnessLevel
    since: datetime


def freshness_states(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetKey]
) -> dict[dg.AssetKey, FreshnessView]:
    """The FreshnessDaemon's latest state per asset (assets it never evaluated are absent)."""
    if not keys:
        return {}
    records = instance.get_freshness_state_records(list(keys))
    return {k: FreshnessView(k, r.freshness_state.value, r.updated_at) for k, r in records.items()}  # type: ignore[arg-type]


def last_materialization_time(instance: dg.DagsterInstance, key: dg.AssetKey) -> datetime | None:
    event = instance.get_latest_materialization_event(key)
    return datetime.fromtimestamp(event.timestamp, UTC) if event is not None else None


@contextmanager
def in_process_workspace(
    instance: dg.DagsterInstance, module_name: str, attribute: str, working_directory: str | None = None
) -> Iterator[Any]:
    """A daemon workspace over a code location loaded in this process (no gRPC server)."""
    # lazy: only tests and ``status`` load a workspace, not the code location, saves 73 ms
    from dagster._core.workspace.context import WorkspaceProcessContext

    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name=module_name, attribute=attribute, working_directory=working_directory
        ),
        location_name="integration_assets",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


def run_freshness_daemon_once(workspace_process_context: Any) -> int:
    """One iteration of the open-source FreshnessDaemon (what ``dagster-daemon`` does every 30 s): evaluates
    every asset's freshness policy and records FRESHNESS_STATE_CHANGE events. Returns the number of changes."""
    # lazy: the daemon's code is for tests and ``status``, not the code location, saves 352 ms
    from dagster._daemon.freshness import FreshnessDaemon

    changed = asyncio.run(FreshnessDaemon()._evaluate_assets(workspace_process_context))  # noqa: SLF001
    return sum(bool(c) for c in changed)
