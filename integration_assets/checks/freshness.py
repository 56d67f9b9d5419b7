"""Freshness policies from policies.yaml as Dagster ``FreshnessPolicy.time_window`` objects.

Applied to every asset in ``definitions.py``. The window of an asset is its source entity's (raw landing and
canonical table alike); an asset of a system without a contract yet (e.g. a future Stripe asset) uses its
group name as the source, else the defaults. The open-source FreshnessDaemon evaluates them every 30 s
(docs/DAGSTER.md §2): only the latest materialization counts, i.e. the last time a file or event arrived.
"""

from __future__ import annotations

import functools

import dagster as dg

from integration_assets.assets.files import canonical_key, raw_key
from integration_assets.contracts.spec import known_entities
from integration_assets.policies import Policies


@functools.cache
def _entities() -> dict[dg.AssetKey, tuple[str, str]]:
    out: dict[dg.AssetKey, tuple[str, str]] = {}
    for system, entity, table in known_entities():
        out[raw_key(system, entity)] = (system, entity)
        out.setdefault(canonical_key(table), (system, entity))
    return out


def freshness_policy_for(
    key: dg.AssetKey, policies: Policies, group: str | None = None
) -> dg.FreshnessPolicy:
    """The time-window freshness policy of one asset."""
    system, entity = _entities().get(key, (group or "", None))
    window = policies.for_entity(system, entity).freshness
    return dg.FreshnessPolicy.time_window(fail_window=window.fail, warn_window=window.warn)
