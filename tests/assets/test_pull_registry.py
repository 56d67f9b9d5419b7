"""The registries of the partitioned pulls (assets/pull.py) that the backfill CLI and partition health read
cover Stripe's events pull, whose asset and job come from assets/stripe_pull.py."""

from __future__ import annotations

from integration_assets.assets.pull import (
    API_TABLES,
    PARTITIONED_ASSETS,
    PULL_JOBS,
    SOURCE_JOBS,
    build_partition_jobs,
    build_partitioned_assets,
    partitioned_assets,
)
from integration_assets.assets.stripe_pull import STRIPE_EVENTS_JOB, STRIPE_EVENTS_KEY


def test_stripe_events_is_listed_but_built_by_its_own_module() -> None:
    assert PARTITIONED_ASSETS[("stripe", "events")] == STRIPE_EVENTS_KEY
    assert PULL_JOBS[("stripe", "events")] == STRIPE_EVENTS_JOB
    assert partitioned_assets("stripe") == [STRIPE_EVENTS_KEY]
    # Its asset, job and schedule are assets/stripe_pull.py's: not built twice here.
    assert ("stripe", "events") not in API_TABLES and "stripe" not in SOURCE_JOBS
    assert STRIPE_EVENTS_KEY not in {a.key for a in build_partitioned_assets()}
    assert STRIPE_EVENTS_JOB not in build_partition_jobs()
    assert set(PULL_JOBS) == set(PARTITIONED_ASSETS)
