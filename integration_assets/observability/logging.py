"""Structured logs: one JSON object per line, carrying the ids that tie a line to a run, a load, an event.

Connectors, the mapping engine and the loaders log with the standard library (``logging.getLogger``); the
ids are not passed around but set once with :func:`correlation`, held in a ``contextvars.ContextVar`` (so
they follow threads' and asyncio tasks' own contexts and never leak between them), and picked up by the
formatter::

    with correlation(run_id=context.run_id, load_id=load_id, source_system="hubspot", entity="contacts"):
        log.info("merged %d rows", n)   # -> {"message": "merged 10 rows", "run_id": ..., "load_id": ...}

Everything that reaches the output - message, ids, ``extra=`` fields, tracebacks - goes through the same
redaction as alerts (OWASP Logging Cheat Sheet: no tokens, card data or personal data; CR/LF stripped so
a value cannot forge a log line).
"""

from __future__ import annotations

import json as _json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from integration_assets.observability.redact import redact, redact_text

__all__ = [
    "CORRELATION_FIELDS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "correlation",
    "current_correlation",
]

# The ids a log line can be correlated by. event_id / idempotency_key identify one webhook event or queue
# message; asset_key / partition_key / check_name come from the Dagster layer.
CORRELATION_FIELDS: tuple[str, ...] = (
    "run_id",
    "load_id",
    "event_id",
    "idempotency_key",
    "source_system",
    "entity",
    "asset_key",
    "partition_key",
    "check_name",
)

_EMPTY: Mapping[str, str] = MappingProxyType({})
_ids: ContextVar[Mapping[str, str]] = ContextVar("integration_assets_correlation", default=_EMPTY)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_DOC_KEYS = frozenset({"timestamp", "level", "logger", "message", "exception", "exc_type", "stack"})
_HANDLER_MARK = "_integration_assets_handler"


@contextmanager
def correlation(**ids: object) -> Iterator[dict[str, str]]:
    """Attach correlation ids to every log line written inside the block (nested blocks add to them).

    Only the names in ``CORRELATION_FIELDS`` are accepted (a typo would silently lose the id); ``None``
    values are ignored, so ``correlation(run_id=run_id, load_id=maybe_none)`` is fine.
    """
    unknown = sorted(set(ids) - set(CORRELATION_FIELDS))
    if unknown:
        raise TypeError(f"unknown correlation ids {unknown}; expected some of {CORRELATION_FIELDS}")
    merged = {**_ids.get(), **{k: str(v) for k, v in ids.items() if v is not None}}
    token = _ids.set(MappingProxyType(merged))
    try:
        yield dict(merged)
    finally:
        _ids.reset(token)


def current_correlation() -> dict[str, str]:
    """The correlation ids in effect here (e.g. to copy onto a queue message or an alert's details)."""
    return dict(_ids.get())


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _exception_lines(text: str) -> list[str]:
    # Each traceback line redacted on its own: the structure stays readable, the values do not leak.
    return [redact_text(line) for line in text.splitlines() if line.strip()]


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (UTC), level, logger, message, correlation ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        doc.update({k: redact_text(v) for k, v in _ids.get().items()})
        for key, value in redact(_extras(record)).items():
            doc[f"extra_{key}" if key in _DOC_KEYS else key] = value
        if record.exc_info:
            doc["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            doc["exception"] = _exception_lines(self.formatException(record.exc_info))
        elif record.exc_text:
            doc["exception"] = _exception_lines(record.exc_text)
        if record.stack_info:
            doc["stack"] = _exception_lines(self.formatStack(record.stack_info))
        # ensure_ascii: U+2028 and friends stay escaped, so "one line" holds for every line-based reader.
        return _json.dumps(doc, ensure_ascii=True, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable single-line records for a terminal, with the same ids and redaction."""

    def format(self, record: logging.LogRecord) -> str:
        ids = {**_ids.get(), **redact(_extras(record))}
        suffix = " ".join(f"{k}={redact_text(str(v))}" for k, v in ids.items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {redact_text(record.getMessage())}"
        if suffix:
            line += f" [{suffix}]"
        if record.exc_info:
            line += "".join(f"\n  | {ln}" for ln in _exception_lines(self.formatException(record.exc_info)))
        return line


def configure_logging(
    level: int | str = "INFO", json: bool = True, *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) as JSON lines (or readable text).

    Idempotent: calling it again replaces the handler it installed before instead of adding a second one.
    Returns the handler (tests and the CLI may want to remove or inspect it).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
