"""Sensor on the file inbox: one run per new file, keyed by content hash and attempt.

The run key is ``<system>/<entity>:<sha256>`` for a file's first run and ``…:<sha256>:attempt<N>`` for a retry,
so the same content dropped twice (even under another name) launches once, and a file whose run failed
(the warehouse was down, a lock timed out, the run was killed) is launched again by a later tick. The attempts
are the finished runs of this sensor for that content, read from the Dagster instance (the warehouse cannot
record a failure it caused); the next attempt waits INTEGRATION_INBOX_RETRY_SECONDS, doubling per attempt up
to INTEGRATION_INBOX_RETRY_MAX_SECONDS after the last run ended.

The tick decides and the runs act. It reads the inbox, the ledger and the run history
(``ingest.inbox.decide``) and requests runs: one ingest run per new content, and one ``tidy_inbox`` run
when entries must move without a load (refused entries, misplaced files, copies of content already loaded:
archived as duplicates). It moves no file and writes no row; the runs migrate the warehouse when they start.
A tick that cannot reach the warehouse launches nothing (a run would fail too): it records the outage per
waiting file in its cursor and goes on with the alert below.

A file failing for INTEGRATION_INBOX_ALERT_ATTEMPTS attempts, or for INTEGRATION_INBOX_ALERT_SECONDS, raises an
``inbox:stuck:…`` alert. With the warehouse up it is an ordinary incident (alert_incidents). With the warehouse
down the notice is sent straight to the notifier's channels (JSON-lines log, webhook, Slack, e-mail: files and
HTTP, no database) and the incident's state (opened, notified) is kept in this sensor's cursor instead, so it
is sent once per episode; the RESOLVED notice follows when the file leaves the inbox.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

from integration_assets.alerts.incidents import Alert
from integration_assets.alerts.notifier import Notifier
from integration_assets.assets.files import ENTITY_TAG, job_name, raw_op_name
from integration_assets.ingest import inbox
from integration_assets.jobs.inbox import TIDY_JOB, known_folders
from integration_assets.observability.redact import redact_text
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine

MAX_RUNS_PER_TICK = 50
_clock = time.time  # the tick's "now" (a test moves it to see the backoff without waiting)
SHA_TAG = "integration/sha256"
_FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
_NOT_FINISHED = [s for s in dg.DagsterRunStatus if s not in _FINISHED]
RUNBOOK = (
    "integration-assets status lists the stuck file with its attempts and last error. If the warehouse is "
    "down, bring it back: the sensor retries the file by itself. Otherwise read the failed run in the "
    "Dagster UI, fix the cause, and the next retry (or integration-assets sync) loads it."
)


@dataclass(frozen=True)
class Retry:
    """The retry policy of the inbox sensor (read from the environment on every tick)."""

    base: float
    cap: float
    alert_attempts: int
    alert_seconds: float

    @classmethod
    def from_env(cls) -> Retry:
        s = get_settings()
        return cls(
            s.inbox_retry_seconds, s.inbox_retry_max_seconds, s.inbox_alert_attempts, s.inbox_alert_seconds
        )

    def wait(self, finished: int) -> float:
        """Seconds between the end of the ``finished``-th run and the next attempt."""
        return min(self.cap, self.base * 2 ** max(finished - 1, 0))


@dataclass(frozen=True)
class History:
    """This sensor's runs for one content: how many finished, failed, are in flight; the last end and error."""

    finished: int
    failed: int
    in_flight: int
    last_end: float | None
    last_error: str | None


def run_history(instance: dg.DagsterInstance, system: str, entity: str, sha: str) -> History:
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={SHA_TAG: sha, ENTITY_TAG: f"{system}.{entity}"})
    )
    finished = [r for r in records if r.dagster_run.status in _FINISHED]
    failed = [r for r in finished if r.dagster_run.status in _FAILED]
    ends = [r.end_time for r in finished if r.end_time is not None]
    error = None
    if failed:
        last = max(failed, key=lambda r: r.end_time or 0)
        error = _run_error(instance, last.dagster_run.run_id)
    return History(
        len(finished), len(failed), len(records) - len(finished), max(ends) if ends else None, error
    )


def _run_error(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first step failure of a run as ``<ErrorClass>: <first line>``, redacted (a driver's message may quote
    a value) and short."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        if error is not None:
            cause = error.cause or error
            return _short(f"{cause.cls_name}: {cause.message}")
    return f"run {run_id} failed before any step (see the Dagster UI)"


def _short(text: str) -> str:
    return redact_text(text.strip().splitlines()[0] if text.strip() else text)[:300]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _load_cursor(raw: str | None) -> dict[str, Any]:
    data = json.loads(raw) if raw else {}
    if data and "v" not in data:  # the cursor before retries: path -> [size, mtime, sha]
        data = {"hashes": data}
    return {
        "v": 2,
        "hashes": data.get("hashes", {}),
        "stuck": data.get("stuck", {}),
        "alerts": data.get("alerts", {}),
    }


def _warehouse_error(exc: Exception) -> str:
    orig = getattr(exc, "orig", None) or exc
    return _short(f"warehouse unreachable: {type(orig).__name__}: {orig}")


def _in_flight(instance: dg.DagsterInstance, job: str) -> bool:
    return bool(
        instance.get_run_records(filters=dg.RunsFilter(job_name=job, statuses=_NOT_FINISHED), limit=1)
    )


def inbox_run_requests(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """The tick decides (``ingest.inbox.decide``: the ledger and the run history, read only) and requests
    runs; the runs act. A tick moves no file and writes no row."""
    settings = get_settings()
    policy = Retry.from_env()
    state = _load_cursor(context.cursor)
    now = _clock()
    down: str | None = None
    try:
        decision = inbox.decide(
            settings, get_engine(settings.warehouse_url), known_folders, hashes=state["hashes"]
        )
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        down = _warehouse_error(exc)
        context.log.warning("%s; no file is launched this tick", down)
        decision = inbox.decide(settings, None, known_folders, hashes=state["hashes"])
    hashes: dict[str, list] = {}
    stuck: dict[str, dict[str, Any]] = {}
    requests: list[dg.RunRequest] = []
    keys: set[str] = set()
    waiting: list[str] = []
    if down is None and decision.to_tidy:
        # Refused entries, misplaced files and copies of loaded content move without a load: one tidy run.
        for refused in decision.refused:
            context.log.info("to reject: %s: %s (%s)", refused.file.path.name, refused.code, refused.reason)
        for f, _ in decision.misplaced:
            context.log.info("to reject: %s is not in <system>/<entity>/ of a contract", f.path.name)
        for f, _, done in decision.duplicates:
            context.log.info("to archive: %s duplicates content loaded by %s", f.path.name, done)
        if not _in_flight(context.instance, TIDY_JOB):
            requests.append(dg.RunRequest(job_name=TIDY_JOB, tags={"integration/trigger": "inbox_sensor"}))
    for f, sha, _ in decision.duplicates:  # hashed once: kept until the tidy run has moved them
        hashes[str(f.path)] = [f.size, f.mtime, sha]
    for f, sha in decision.new:
        path_key = str(f.path)
        hashes[path_key] = [f.size, f.mtime, sha]
        history = run_history(context.instance, f.system, f.entity, sha)
        content_key = f"{f.system}/{f.entity}:{sha}"
        if history.failed or down is not None:
            before = state["stuck"].get(content_key, {})
            first = before.get("since") or (
                _iso(history.last_end) if history.failed and history.last_end else _iso(now)
            )
            stuck[content_key] = {
                "file": str(f.path.relative_to(settings.inbox_dir)),
                "since": first,
                "attempts": history.failed,
                "error": down or history.last_error,
                "system": f.system,
                "entity": f.entity,
            }
        if history.in_flight:
            continue  # its run is queued or running
        if down is not None:
            waiting.append(f.path.name)
            continue
        attempt = history.finished + 1
        if history.finished and history.last_end is not None:
            due = history.last_end + policy.wait(history.finished)
            if now < due:
                waiting.append(f"{f.path.name} (attempt {attempt} in {math.ceil(due - now)} s)")
                continue
        run_key = content_key if attempt == 1 else f"{content_key}:attempt{attempt}"
        if run_key in keys:
            continue  # an identical file is already requested this tick
        if len(keys) < MAX_RUNS_PER_TICK:
            keys.add(run_key)
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    job_name=job_name(f.system, f.entity),
                    run_config={
                        "ops": {raw_op_name(f.system, f.entity): {"config": {"files": [str(f.path)]}}}
                    },
                    tags={
                        ENTITY_TAG: f"{f.system}.{f.entity}",
                        "integration/file": f.path.name[:200],
                        SHA_TAG: sha,
                        "integration/attempt": str(attempt),
                    },
                )
            )
    state["hashes"], state["stuck"] = hashes, stuck
    for line in stuck_alerts(state, policy, now, warehouse_up=down is None):
        context.log.warning(line)
    cursor = json.dumps(state)
    if not requests:
        reason = "no new files in the inbox"
        if down is not None:
            reason = f"{down}; {len(waiting)} file(s) wait for it"
        elif waiting:
            reason = "waiting to retry: " + ", ".join(waiting[:10])
        return dg.SensorResult(skip_reason=reason[:1000], cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


# -- alerts on stuck files ----------------------------------------------------------------------------------


def stuck_alert(key: str, entry: dict[str, Any], now: float) -> Alert:
    minutes = int((now - datetime.fromisoformat(entry["since"]).timestamp()) // 60)
    return Alert(
        key=f"inbox:stuck:{key}"[:255],
        severity="error",
        title=f"Inbox file {entry['system']}/{entry['entity']} not loaded after {entry['attempts']} attempt(s)",
        summary=(
            f"{entry['file']} has been failing for {minutes} min ({entry['attempts']} failed run(s)). "
            f"Last error: {entry['error'] or 'unknown'}"
        ),
        source_system=entry["system"],
        entity=entry["entity"],
        check_name="inbox_stuck",
        runbook=RUNBOOK,
        details={
            "file": entry["file"],
            "attempts": entry["attempts"],
            "since": entry["since"],
            "last_error": entry["error"],
        },
    )


def _due(entry: dict[str, Any], policy: Retry, now: float) -> bool:
    age = now - datetime.fromisoformat(entry["since"]).timestamp()
    return entry["attempts"] >= policy.alert_attempts or age >= policy.alert_seconds


def stuck_alerts(state: dict[str, Any], policy: Retry, now: float, *, warehouse_up: bool) -> list[str]:
    """Fire the alert of every file stuck past the policy, resolve the alerts of files that left the inbox.

    ``state["alerts"]`` (the cursor) remembers what was sent: ``{"via": "incident"|"direct", "opened": iso}``.
    """
    actions: list[str] = []
    alerts: dict[str, dict[str, Any]] = state["alerts"]
    due = {k: e for k, e in state["stuck"].items() if _due(e, policy, now)}
    gone = [k for k in alerts if k not in state["stuck"]]
    if not due and not gone:
        return actions
    with Notifier.from_env() as notifier:
        for key, entry in due.items():
            alert = stuck_alert(key, entry, now)
            if alerts.get(key, {}).get("via") == "direct":
                continue  # sent without the warehouse: this episode stays out of the incident table to its end
            if warehouse_up:
                try:
                    out = notifier.fire(alert)  # an ordinary incident: deduplicated by alert_incidents
                except (sa.exc.OperationalError, sa.exc.InterfaceError):
                    warehouse_up = False  # lost since the start of the tick: send it directly below
                else:
                    alerts[key] = {
                        "via": "incident",
                        "opened": alerts.get(key, {}).get("opened") or _iso(now),
                    }
                    actions.append(f"{out.action} {alert.key}")
                    continue
            if key not in alerts:
                sent = notifier.send_unrecorded(alert, "fire", opened_at=datetime.fromtimestamp(now, UTC))
                alerts[key] = {
                    "via": "direct",
                    "opened": _iso(now),
                    "title": alert.title,
                    "system": entry["system"],
                    "entity": entry["entity"],
                }
                actions.append(f"sent {alert.key} without the warehouse ({', '.join(sent) or 'no channel'})")
        for key in gone:
            sent_by = alerts[key]
            summary = "The file left the inbox (loaded, archived or rejected)."
            if sent_by["via"] == "incident":
                if not warehouse_up:
                    continue  # resolve once the incident table can be written
                out = notifier.resolve(f"inbox:stuck:{key}"[:255], summary)
                actions.append(f"{out.action} inbox:stuck:{key}")
            else:
                alert = Alert(
                    key=f"inbox:stuck:{key}"[:255],
                    severity="error",
                    title=sent_by["title"],
                    summary=summary,
                    source_system=sent_by["system"],
                    entity=sent_by["entity"],
                    check_name="inbox_stuck",
                    runbook=RUNBOOK,
                )
                notifier.send_unrecorded(
                    alert, "resolve", opened_at=datetime.fromisoformat(sent_by["opened"])
                )
                actions.append(f"resolved inbox:stuck:{key} without the warehouse")
            del alerts[key]
    return actions


def run_attempts(instance: dg.DagsterInstance) -> inbox.RunAttempts:
    """The sensor's failed runs of a content and the last error, for ``ingest.inbox.inbox_status``."""

    def attempts(system: str, entity: str, sha: str) -> tuple[int, str | None]:
        history = run_history(instance, system, entity, sha)
        return history.failed, history.last_error

    return attempts


def build_inbox_sensor(jobs: list) -> dg.SensorDefinition:
    return dg.SensorDefinition(
        name="inbox_sensor",
        evaluation_fn=inbox_run_requests,
        jobs=jobs,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches one ingest run per new file in <inbox>/<system>/<entity>/ (run key = content hash, "
        "plus the attempt for a retry after a failed run, with backoff); alerts on files stuck.",
    )
