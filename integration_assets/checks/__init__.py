"""Dagster asset checks: thin wrappers that run the plain-Python checks of ``integration_assets.quality``.

``build_asset_checks(asset_keys, policies)`` returns the checks for every canonical asset present;
``dagster_internals`` is the single place that reads Dagster's internal check and freshness records.
"""

from integration_assets.checks.canonical import build_asset_checks, check_specs

__all__ = ["build_asset_checks", "check_specs"]
