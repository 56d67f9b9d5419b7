"""Structured logs: one JSON object per line (structlog), carrying the ids that tie a line to a run, a load,
an event.

Connectors, the mapping engine and the loaders log with the standard library (``logging.getLogger``); the
ids are not passed around but bound once where a unit of work starts, in structlog's context variables (so
they follow threads' and asyncio tasks' own contexts and never leak between them), and picked up when a
record is rendered::

    with correlation(run_id=context.run_id, load_id=load_id, source_system="hubspot", entity="contacts"):
        log.info("merged %d rows", n)   # -> {"message": "merged 10 rows", "run_id": ..., "load_id": ...}

Every entry point installs the handler with :func:`configure_logging` (the CLI's ``entry``, the receiver
through it); Dagster runs render through :class:`JsonFormatter` too (``integration_assets/loggers.py``).
Everything that reaches the output - message, ids, ``extra=`` fields, tracebacks - goes through the same
redaction as alerts (``observability/redact.py``: no tokens, card data or personal data; CR/LF stripped
so a value cannot forge a log line).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from datetime import UTC, datetime
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, get_contextvars, reset_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

from integration_assets.observability.redact import redact

__all__ = [
    "CORRELATION_FIELDS",
    "JsonFormatter",
    "TextFormatter",
    "bind_correlation",
    "configure_logging",
    "correlation",
    "current_correlation",
    "json_logging_installed",
    "unbind_correlation",
]

# The ids a log line can be correlated by. event_id / idempotency_key identify one webhook event or queue
# message, drain_id one run of the event drain; asset_key / partition_key / check_name come from the
# Dagster layer.
CORRELATION_FIELDS: tuple[str, ...] = (
    "run_id",
    "load_id",
    "drain_id",
    "event_id",
    "idempotency_key",
    "source_system",
    "entity",
    "asset_key",
    "partition_key",
    "check_name",
)

_HANDLER_MARK = "_integration_assets_handler"
# Libraries whose INFO lines are noise on every command (alembic announces each plugin it sets up).
_QUIET = ("alembic.runtime.plugins",)


def _checked(ids: Mapping[str, object]) -> dict[str, str]:
    unknown = sorted(set(ids) - set(CORRELATION_FIELDS))
    if unknown:
        raise TypeError(f"unknown correlation ids {unknown}; expected some of {CORRELATION_FIELDS}")
    return {k: str(v) for k, v in ids.items() if v is not None}


def bind_correlation(**ids: object) -> Mapping[str, Token[Any]]:
    """Bind correlation ids for the rest of this context (thread / task); returns the tokens that
    :func:`unbind_correlation` takes to restore the previous ids. Names outside ``CORRELATION_FIELDS`` are
    refused (a typo would silently lose the id); ``None`` values are ignored."""
    return bind_contextvars(**_checked(ids))


def unbind_correlation(tokens: Mapping[str, Token[Any]]) -> None:
    """Restore the ids :func:`bind_correlation` replaced."""
    reset_contextvars(**tokens)


@contextmanager
def correlation(**ids: object) -> Iterator[dict[str, str]]:
    """Attach correlation ids to every log line written inside the block (nested blocks add to them)."""
    tokens = bind_correlation(**ids)
    try:
        yield current_correlation()
    finally:
        unbind_correlation(tokens)


def current_correlation() -> dict[str, str]:
    """The correlation ids in effect here (e.g. to copy onto a queue message or an alert's details)."""
    return {k: v for k, v in get_contextvars().items() if k in CORRELATION_FIELDS}


def _record_fields(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """timestamp (UTC, from the record), level, logger and message of a standard-library record first,
    then the rest; these keys win over ``extra=`` fields of the same name."""
    record: logging.LogRecord = event["_record"]
    head = {
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": event.pop("event"),
    }
    return {**head, **{k: v for k, v in event.items() if k not in head}}


def _redact(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """The whole line through the alerts' redaction (by value pattern and by key)."""
    redacted: EventDict = redact(event)
    return redacted


# A standard-library record -> event dict: the bound ids, the ``extra=`` fields, then the record's own.
_PRE_CHAIN: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.ExtraAdder(),
    _record_fields,
]


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """One JSON object per record: timestamp (UTC), level, logger, message, correlation ids, extras and,
    with an exception, its structured traceback (without local variables)."""

    def __init__(self, *, pre_chain: list[Processor] | None = None) -> None:
        super().__init__(
            foreign_pre_chain=[*_PRE_CHAIN, *(pre_chain or [])],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.ExceptionRenderer(
                    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                ),
                structlog.processors.StackInfoRenderer(),
                _redact,
                # ensure_ascii: U+2028 and friends stay escaped, so "one line" holds for every line reader.
                structlog.processors.JSONRenderer(ensure_ascii=True, default=str),
            ],
        )


class TextFormatter(structlog.stdlib.ProcessorFormatter):
    """Human-readable single-line records for a terminal, with the same ids and redaction."""

    def __init__(self, *, pre_chain: list[Processor] | None = None) -> None:
        super().__init__(
            foreign_pre_chain=[*_PRE_CHAIN, *(pre_chain or [])],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact,
                structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, event_key="message"),
            ],
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def json_logging_installed() -> bool:
    """Whether :func:`configure_logging` has installed its handler on the root logger in this process."""
    return any(getattr(h, _HANDLER_MARK, False) for h in logging.getLogger().handlers)


def configure_logging(
    level: int | str = "INFO",
    json: bool = True,
    *,
    stream: IO[str] | None = None,
    pre_chain: list[Processor] | None = None,
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (default: the current stderr) as JSON lines (or
    readable text). ``pre_chain``: structlog processors run on each record after the standard fields
    (an upper layer's, e.g. the Dagster metadata of a job run in this process).

    Idempotent: calling it again replaces the handler it installed before instead of adding a second one.
    Returns the handler (tests and the CLI may want to remove or inspect it).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter(pre_chain=pre_chain) if json else TextFormatter(pre_chain=pre_chain))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
