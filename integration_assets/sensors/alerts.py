"""Alert sensors: open-source Dagster has no built-in alerting on checks or freshness, so these sensors poll
the instance (and the warehouse) and raise incidents through ``alerts.notifier.Notifier``.

===========================  ===================================================  ==========================
sensor                       fires when                                           resolves when
===========================  ===================================================  ==========================
asset_check_alerts           a check's latest evaluation failed (WARN -> warning,  its next evaluation passes
                             ERROR -> error) or could not execute (error)
freshness_alerts             the FreshnessDaemon put an asset in WARN / FAIL       the asset is PASS again
run_failure_alerts           a run of this code location failed                    run_recovery_alerts: the
                                                                                   same job succeeds again
dead_letter_growth_alerts    new rows were quarantined for a source entity         nothing is pending any more
connector_http_error_alerts  a connector sees sustained 429/5xx (policies.yaml)    the error rate is low again
===========================  ===================================================  ==========================

Incident keys (one incident per key; the notifier deduplicates, so one alert per incident, not per tick):
``check:<asset>:<check>``, ``freshness:<system>/<entity>:warn|fail``, ``run:<job>``, ``dead_letters:<system>/<entity>``,
``http:<system>``. Every alert names what happened and where, and carries a runbook line from policies.yaml;
details hold ids and counts (the notifier redacts anything else). All sensors start RUNNING.

Time comes from Dagster's clock (``dagster_internals.now``), so a test can move it with ``freeze_time``.
"""

import json
from collections import Counter
from collections.abc import Sequence

import dagster as dg

from integration_assets.alerts.notifier import Notifier
from integration_assets.checks import dagster_internals
from integration_assets.policies import FreshnessWindow, Policies
from integration_assets.sensors.alert_rules import (
    check_alerts,
    dead_letter_alerts,
    freshness_alerts,
    http_error_alerts,
    partition_failure_alerts,
    run_failure_alert,
    run_recovered,
    subjects,
)
from integration_assets.warehouse.db import at_head, get_engine

NOT_MIGRATED = "warehouse not migrated yet: run `integration-assets db upgrade` or any run"


def notifier() -> Notifier:
    """Channels from the environment (INTEGRATION_ALERT_*), timestamps from Dagster's clock."""
    return Notifier.from_env(clock=dagster_internals.now)


# -- the sensor definitions ---------------------------------------------------------------------------------


def tick_message(actions: Sequence[str], checked: str) -> str:
    """What an alert tick did, in words. Dagster 1.13 marks every tick that requests no run "Skipped" (the
    sensor daemon sets SUCCESS only when runs were submitted), and these sensors do their work in the tick
    (the notifier sends the alert), so the tick's reason is where the UI says what happened."""
    if not actions:
        return f"Checked {checked}: nothing new to alert or resolve (no run needed)."
    counts = Counter(a.split(" ", 1)[0] for a in actions)
    done = ", ".join(f"{n} {verb}" for verb, n in sorted(counts.items()))
    return f"Alerts handled by the sensor itself, no run needed: {done}. " + "; ".join(actions)


def _done(
    context: dg.SensorEvaluationContext, actions: list[str], cursor: str | None, checked: str
) -> dg.SensorResult:
    for a in actions:
        context.log.info(a)
    return dg.SensorResult(skip_reason=tick_message(actions, checked)[:1000], cursor=cursor)


def _unmigrated() -> dg.SensorResult | None:
    """A tick only reads the schema version: migrating is a run's job (the WarehouseResource's setup) or
    ``db upgrade``'s, never a sensor's. Every alert sensor writes incidents, so none runs before that."""
    if not at_head():
        return dg.SensorResult(skip_reason=NOT_MIGRATED)
    return None


def build_alert_sensors(
    assets: Sequence[dg.AssetsDefinition], checks: Sequence[dg.AssetChecksDefinition], policies: Policies
) -> list[dg.SensorDefinition]:
    """The alert sensors for these assets (freshness) and checks (check failures), RUNNING by default."""
    where = subjects()
    check_keys = sorted({k for c in checks for k in c.check_keys}, key=lambda k: k.to_user_string())
    windows: dict[dg.AssetKey, FreshnessWindow] = {}
    for a in assets:
        for key in a.keys:
            s = where.get(key)
            if s and s.system:
                windows[key] = policies.for_entity(s.system, s.entity).freshness
    interval = policies.sensors.seconds
    running = dg.DefaultSensorStatus.RUNNING

    @dg.sensor(
        name="asset_check_alerts",
        minimum_interval_seconds=interval("check_alerts"),
        default_status=running,
        description="Alerts when an asset check's latest evaluation fails or cannot run; resolves when it "
        "passes again (OSS Dagster has no check alerts).",
    )
    def asset_check_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if skipped := _unmigrated():
            return skipped
        cursor = json.loads(context.cursor) if context.cursor else {}
        with notifier() as alerts:
            seen, actions = check_alerts(context.instance, check_keys, cursor, alerts, policies, where)
        return _done(
            context,
            actions,
            json.dumps(seen, sort_keys=True),
            f"the latest evaluations of {len(check_keys)} checks",
        )

    @dg.sensor(
        name="freshness_alerts",
        minimum_interval_seconds=interval("freshness_alerts"),
        default_status=running,
        description="Alerts when the FreshnessDaemon marks an asset WARN or FAIL (no new data within the "
        "window from policies.yaml); resolves when it is PASS again.",
    )
    def freshness_alerts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if skipped := _unmigrated():
            return skipped
        with notifier() as alerts:
            actions = freshness_alerts(context.instance, windows, alerts, policies, where)
        return _done(context, actions, None, f"the freshness of {len(windows)} assets")

    @dg.run_failure_sensor(
        name="run_failure_alerts",
        minimum_interval_seconds=interval("run_failure_alerts"),
        default_status=running,
        description="Alerts when a run of this code location fails.",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        message = context.failure_event.message if context.failure_event else ""
        steps = [e.step_key for e in context.get_step_failure_events() if e.step_key]
        with notifier() as alerts:
            context.log.info(run_failure_alert(context.dagster_run, message or "", steps, alerts, policies))

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="run_recovery_alerts",
        minimum_interval_seconds=interval("run_failure_alerts"),
        default_status=running,
        description="Resolves a job's run-failure alert when the job succeeds again.",
    )
    def run_recovery_alerts(context: dg.RunStatusSensorContext) -> None:
        with notifier() as alerts:
            context.log.info(run_recovered(context.dagster_run, alerts))

    @dg.sensor(
        name="dead_letter_growth_alerts",
        minimum_interval_seconds=interval("dead_letter_growth"),
        default_status=running,
        description="Alerts when new records are quarantined for a source entity; "
        "resolves when none is pending.",
    )
    def dead_letter_growth_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if skipped := _unmigrated():
            return skipped
        with notifier() as alerts:
            mark, actions = dead_letter_alerts(get_engine(), context.cursor, alerts, policies)
        return _done(context, actions, mark, "the dead letters of every source entity")

    @dg.sensor(
        name="connector_http_error_alerts",
        minimum_interval_seconds=interval("connector_http_errors"),
        default_status=running,
        description="Alerts on sustained HTTP 429/5xx responses to a connector "
        "(connector_http_stats); resolves when calls succeed again.",
    )
    def connector_http_error_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if skipped := _unmigrated():
            return skipped
        with notifier() as alerts:
            actions = http_error_alerts(get_engine(), alerts, policies)
        return _done(context, actions, None, "the connectors' HTTP error rates")

    @dg.sensor(
        name="partition_failure_alerts",
        minimum_interval_seconds=interval("run_failure_alerts"),
        default_status=running,
        description="Alerts when days of a partitioned API pull failed (their latest run failed), with the "
        "backfill command; resolves when no failed day is left.",
    )
    def partition_failure_alerts_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        if skipped := _unmigrated():
            return skipped
        with notifier() as alerts:
            actions = partition_failure_alerts(context.instance, alerts, policies)
        return _done(context, actions, None, "the failed partitions of the API pulls")

    return [
        asset_check_alerts,
        freshness_alerts_sensor,
        run_failure_alerts,
        run_recovery_alerts,
        dead_letter_growth_alerts,
        connector_http_error_alerts,
        partition_failure_alerts_sensor,
    ]
