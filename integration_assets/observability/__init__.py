"""Observability of the flow: structured JSON logs with correlation ids (plain Python, no Dagster)."""

from integration_assets.observability.logging import (
    CORRELATION_FIELDS,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    correlation,
    current_correlation,
)

__all__ = [
    "CORRELATION_FIELDS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "correlation",
    "current_correlation",
]
