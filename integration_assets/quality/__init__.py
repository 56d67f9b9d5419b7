"""Data quality over the warehouse, in plain Python (no Dagster): the logic behind the asset checks.

- ``ledger_checks``: volume, quarantine rate, dead-letter backlog, drift (loads ledger, dead letters, drift);
- ``integrity``: keys (not null, unique) and references between canonical tables;
- ``reconciliation``: HubSpot vs Odoo vs Stripe, mismatches into ``reconciliation_mismatches``;
- ``expectations``: a Great Expectations 1.x suite per canonical table;
- ``connector_health``: connector HTTP response counts and the sustained-429/5xx rule.

Every check takes a SQLAlchemy connection (GX: the warehouse URL) and returns a ``CheckOutcome``;
``integration_assets.checks`` wraps them as Dagster asset checks. The thresholds come from
``integration_assets.policies``.
"""

from integration_assets.quality.outcome import CheckOutcome

__all__ = ["CheckOutcome"]
