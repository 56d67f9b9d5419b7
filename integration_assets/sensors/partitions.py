"""Partition health and backfills of the partitioned API pulls (``api/<system>/<entity>``, issue 13).

What the UI shows per partitioned asset (materialized, failed, missing partitions) read from the instance the
way the UI reads it (Dagster's asset status cache), and the backfill the UI launches (asset → Materialize →
date range → Launch backfill), made through the same GraphQL mutation, ``launchPartitionBackfill``, executed
against a workspace loaded in this process. Used by ``integration-assets backfill`` and ``status``, and by the
``partition_failure_alerts`` rule.

Dagster internals used here (no public API for them in 1.13, docs/DAGSTER.md §5): the asset status cache
(``dagster._core.storage.partition_status_cache``), the backfill filters (``BulkActionsFilter``) and the
backfill daemon's iteration (for ``--run-now`` and the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from integration_assets.assets.pull import PARTITIONED_ASSETS as PULL_ASSETS
from integration_assets.assets.pull import partitions_def_for
from integration_assets.assets.stripe_pull import STRIPE_EVENTS_KEY
from integration_assets.checks import dagster_internals
from integration_assets.contracts.spec import entity_slug
from integration_assets.policies import Policies, load_policies

DAY = "%Y-%m-%d"
# Backfills that may still launch runs: a second one over the same partitions would write them twice.
ACTIVE = (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING)

# (system, entity) -> every daily-partitioned pull asset: HubSpot and Odoo entities, and Stripe's events.
PARTITIONED_ASSETS: dict[tuple[str, str], dg.AssetKey] = {
    **PULL_ASSETS,
    ("stripe", "events"): STRIPE_EVENTS_KEY,
}

LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId launchedRunIds }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


class BackfillError(Exception):
    """A backfill that cannot or must not be launched; the message says why and what to do."""


def resolve(system: str, entity: str) -> tuple[str, str, dg.AssetKey]:
    """(system, entity as the contracts name it, asset key) for CLI spellings (``sale_order`` or ``sale.order``)."""
    by_slug = {(s, entity_slug(e)): (s, e) for s, e in PARTITIONED_ASSETS}
    found = by_slug.get((system, entity_slug(entity)))
    if found is None:
        systems = sorted({s for s, _ in PARTITIONED_ASSETS})
        if system not in systems:
            raise BackfillError(f"unknown source {system!r}: partitioned sources are {', '.join(systems)}")
        known = sorted(entity_slug(e) for s, e in PARTITIONED_ASSETS if s == system)
        raise BackfillError(f"unknown {system} entity {entity!r}: one of {', '.join(known)}")
    return found[0], found[1], PARTITIONED_ASSETS[found]


def partition_range(
    system: str, start: date, end: date, *, now: datetime | None = None, policies: Policies | None = None
) -> list[str]:
    """The partition keys from ``start`` to ``end`` (both included), or a clear error for a range that is
    reversed, begins before the source's first partition or ends after today's."""
    if start > end:
        raise BackfillError(f"--from {start:{DAY}} is after --to {end:{DAY}}")
    pdef = partitions_def_for(system, policies)
    first = (policies or load_policies()).partitions.start_for(system)
    today = (now or dagster_internals.now()).date()
    if start < first:
        raise BackfillError(
            f"{system} partitions start on {first:{DAY}} (partitions.start in policies.yaml); "
            f"--from {start:{DAY}} is before it"
        )
    if end > today:
        raise BackfillError(f"--to {end:{DAY}} is in the future: the last partition is today, {today:{DAY}}")
    keys = [(start + timedelta(days=i)).strftime(DAY) for i in range((end - start).days + 1)]
    valid = set(pdef.get_partition_keys(current_time=now or dagster_internals.now()))
    missing = [k for k in keys if k not in valid]
    if missing:  # should not happen past the checks above; Dagster has the last word
        raise BackfillError(f"not partitions of {system}: {', '.join(missing[:5])}")
    return keys


@dataclass(frozen=True)
class PartitionHealth:
    """One partitioned asset's partitions up to yesterday (today's partition is still being filled)."""

    system: str
    entity: str
    asset_key: dg.AssetKey
    total: int
    materialized: int
    failed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    in_progress: tuple[str, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return not self.failed and not self.missing

    def command(self) -> str | None:
        """The exact ``integration-assets backfill`` command that repairs the failed and missing partitions."""
        keys = sorted(self.failed + self.missing)
        if not keys:
            return None
        flags = (" --only-failed" if self.failed else "") + (" --missing" if self.missing else "")
        return (
            f"integration-assets backfill {self.system} {entity_slug(self.entity)} "
            f"--from {keys[0]} --to {keys[-1]}{flags}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "entity": self.entity,
            "asset": self.asset_key.to_user_string(),
            "partitions": self.total,
            "materialized": self.materialized,
            "failed": list(self.failed),
            "missing": list(self.missing),
            "in_progress": list(self.in_progress),
            "command": self.command(),
        }


def day_ranges(keys: Iterable[str]) -> list[tuple[str, str]]:
    """Consecutive days as (first, last) ranges, for showing many partitions on one line."""
    out: list[tuple[str, str]] = []
    for key in sorted(keys):
        if out and datetime.strptime(key, DAY) - datetime.strptime(out[-1][1], DAY) == timedelta(days=1):
            out[-1] = (out[-1][0], key)
        else:
            out.append((key, key))
    return out


def partition_states(
    instance: dg.DagsterInstance,
    system: str,
    entity: str,
    *,
    now: datetime | None = None,
    policies: Policies | None = None,
) -> PartitionHealth:
    """Materialized / failed / missing / in-progress partitions of one asset, as the UI's partition bar shows."""
    key = PARTITIONED_ASSETS[(system, entity)]
    pdef = partitions_def_for(system, policies)
    now = now or dagster_internals.now()
    today = now.strftime(DAY)
    keys = [k for k in pdef.get_partition_keys(current_time=now) if k < today]
    cache = get_and_update_asset_status_cache_value(instance, key, pdef)
    if cache is None:
        done: set[str] = set()
        failed: set[str] = set()
        running: set[str] = set()
    else:
        done = set(cache.deserialize_materialized_partition_subsets(pdef).get_partition_keys())
        failed = set(cache.deserialize_failed_partition_subsets(pdef).get_partition_keys())
        running = set(cache.deserialize_in_progress_partition_subsets(pdef).get_partition_keys())
    wanted = set(keys)
    return PartitionHealth(
        system=system,
        entity=entity,
        asset_key=key,
        total=len(keys),
        materialized=len(done & wanted),
        failed=tuple(sorted((failed & wanted) - running)),
        missing=tuple(sorted(wanted - done - failed - running)),
        in_progress=tuple(sorted(running & wanted)),
    )


def partition_health(
    instance: dg.DagsterInstance, *, now: datetime | None = None, policies: Policies | None = None
) -> list[PartitionHealth]:
    policies = policies or load_policies()
    return [partition_states(instance, s, e, now=now, policies=policies) for s, e in PARTITIONED_ASSETS]


# -- backfills ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    backfill_id: str
    status: str
    partitions: tuple[str, ...]


def active_overlaps(workspace: Any, asset_key: dg.AssetKey, partitions: Sequence[str]) -> list[Overlap]:
    """Backfills still launching runs whose target includes some of ``partitions`` of ``asset_key``."""
    instance = workspace.instance
    wanted = set(partitions)
    out = []
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=list(ACTIVE))):
        if backfill.is_asset_backfill:
            subset = backfill.get_target_partitions_subset(workspace, asset_key)
            keys = set(subset.get_partition_keys()) if subset is not None else set()
        else:
            keys = set(backfill.partition_names or ())
        common = wanted & keys
        if common:
            out.append(Overlap(backfill.backfill_id, backfill.status.value, tuple(sorted(common))))
    return out


def describe_overlaps(overlaps: Sequence[Overlap]) -> str:
    parts = []
    for o in overlaps:
        ranges = ", ".join(a if a == b else f"{a}..{b}" for a, b in day_ranges(o.partitions))
        parts.append(f"backfill {o.backfill_id} ({o.status}) already covers {ranges}")
    return "; ".join(parts)


@contextmanager
def workspace_for(instance: dg.DagsterInstance) -> Iterator[Any]:
    """This code location loaded in this process (no gRPC server): what the webserver's GraphQL and the
    backfill daemon see of it."""
    with dagster_internals.in_process_workspace(
        instance, "integration_assets.definitions", "defs"
    ) as process:
        yield process


def launch_backfill(
    process: Any,
    asset_key: dg.AssetKey,
    partitions: Sequence[str],
    *,
    title: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Launch an asset backfill of ``partitions`` through GraphQL ``launchPartitionBackfill`` (the UI's own
    call: an asset selection and partition names; the daemon runs it under the asset's BackfillPolicy).
    Refuses while another backfill still covers any of the partitions. Returns the backfill id."""
    # lazy: the GraphQL schema is only built when a backfill is launched, saves ~0.5 s on `status`
    from dagster_graphql.test.utils import execute_dagster_graphql

    workspace = process.create_request_context()
    overlaps = active_overlaps(workspace, asset_key, partitions)
    if overlaps:
        raise BackfillError(
            f"not launched, it would write these partitions twice: {describe_overlaps(overlaps)}. "
            "Wait for it (--wait) or cancel it in the UI (Runs › Backfills)."
        )
    params: dict[str, Any] = {
        "assetSelection": [{"path": list(asset_key.path)}],
        "partitionNames": list(partitions),
        "fromFailure": False,
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
    }
    if title:
        params["title"] = title
    result = execute_dagster_graphql(workspace, LAUNCH_PARTITION_BACKFILL, {"backfillParams": params})
    payload = result.data["launchPartitionBackfill"]
    if payload["__typename"] != "LaunchBackfillSuccess":
        detail = payload.get("message") or payload.get("errors") or payload
        raise BackfillError(f"Dagster refused the backfill ({payload['__typename']}): {detail}")
    backfill_id: str = payload["backfillId"]
    return backfill_id


def backfill_status(instance: dg.DagsterInstance, backfill_id: str) -> str | None:
    backfill = instance.get_backfill(backfill_id)
    return backfill.status.value if backfill is not None else None


def run_backfills_once(workspace_process_context: Any) -> None:
    """One iteration of the backfill daemon (what ``dagster-daemon`` does every 30 s): submits the next runs
    of every requested backfill and marks finished backfills completed."""
    # lazy: the daemon's code is for --run-now and the tests, saves the daemon's imports elsewhere
    from dagster._daemon.backfill import execute_backfill_iteration

    errors = [
        e
        for e in execute_backfill_iteration(workspace_process_context, logging.getLogger("backfill"))
        if e is not None
    ]
    if errors:
        raise BackfillError(f"the backfill daemon failed: {errors[0].message}")
