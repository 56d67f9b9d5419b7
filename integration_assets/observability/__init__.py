"""Observability of the flow: structured JSON logs with correlation ids, the metrics registry, redaction
(plain Python, no Dagster)."""

from integration_assets.observability.logging import (
    CORRELATION_FIELDS,
    JsonFormatter,
    TextFormatter,
    bind_correlation,
    configure_logging,
    correlation,
    current_correlation,
    unbind_correlation,
)

__all__ = [
    "CORRELATION_FIELDS",
    "JsonFormatter",
    "TextFormatter",
    "bind_correlation",
    "configure_logging",
    "correlation",
    "current_correlation",
    "unbind_correlation",
]
