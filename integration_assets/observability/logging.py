"""Structured logs: one JSON object per line (python-json-logger), carrying the ids that tie a line to a
run, a load, an event.

Connectors, the mapping engine and the loaders log with the standard library (``logging.getLogger``); the
ids are not passed around but bound once where a unit of work starts, in a context variable (so they follow
threads' and asyncio tasks' own contexts and never leak between them), and copied onto each record by
:class:`CorrelationFilter` when it is handled::

    with correlation(run_id=context.run_id, load_id=load_id, source_system="hubspot", entity="contacts"):
        log.info("merged %d rows", n)   # -> {"message": "merged 10 rows", "run_id": ..., "load_id": ...}

Every entry point installs the handler with :func:`configure_logging` (the CLI's ``entry``, the receiver
through it); Dagster runs render through :class:`JsonFormatter` too (``integration_assets/loggers.py``).
Everything that reaches the output - message, ids, ``extra=`` fields, tracebacks - goes through the same
redaction as alerts (``observability/redact.py``: no tokens, card data or personal data; CR/LF stripped
so a value cannot forge a log line).

structlog rendered these lines before; its import (rich, asyncio) cost every CLI command ~180 ms.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter as _LibJsonFormatter

from integration_assets.observability.redact import redact, redact_text

__all__ = [
    "CORRELATION_FIELDS",
    "CorrelationFilter",
    "FieldHook",
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

# An upper layer's edit of a line's fields before redaction (e.g. the Dagster metadata of a job run).
FieldHook = Callable[[dict[str, Any]], dict[str, Any]]

_HANDLER_MARK = "_integration_assets_handler"
# Libraries whose INFO lines are noise on every command (alembic announces each plugin it sets up).
_QUIET = ("alembic.runtime.plugins",)
# A record's own attributes; everything else on it is an ``extra=`` field (or a bound id).
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_HEAD = ("timestamp", "level", "logger", "message")

_IDS: ContextVar[Mapping[str, str]] = ContextVar(
    "integration_assets_correlation", default=MappingProxyType({})
)


def _checked(ids: Mapping[str, object]) -> dict[str, str]:
    unknown = sorted(set(ids) - set(CORRELATION_FIELDS))
    if unknown:
        raise TypeError(f"unknown correlation ids {unknown}; expected some of {CORRELATION_FIELDS}")
    return {k: str(v) for k, v in ids.items() if v is not None}


def bind_correlation(**ids: object) -> Token[Mapping[str, str]]:
    """Bind correlation ids for the rest of this context (thread / task); returns the token that
    :func:`unbind_correlation` takes to restore the previous ids. Names outside ``CORRELATION_FIELDS`` are
    refused (a typo would silently lose the id); ``None`` values are ignored."""
    return _IDS.set(MappingProxyType({**_IDS.get(), **_checked(ids)}))


def unbind_correlation(token: Token[Mapping[str, str]]) -> None:
    """Restore the ids :func:`bind_correlation` replaced."""
    _IDS.reset(token)


@contextmanager
def correlation(**ids: object) -> Iterator[dict[str, str]]:
    """Attach correlation ids to every log line written inside the block (nested blocks add to them)."""
    token = bind_correlation(**ids)
    try:
        yield current_correlation()
    finally:
        unbind_correlation(token)


def current_correlation() -> dict[str, str]:
    """The correlation ids in effect here (e.g. to copy onto a queue message or an alert's details)."""
    return dict(_IDS.get())


class CorrelationFilter(logging.Filter):
    """Copies the ids bound in this context onto the record; an ``extra=`` field of the same name wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _IDS.get().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


_ADD_IDS = CorrelationFilter()


def _exception(exc: BaseException | None) -> list[dict[str, Any]]:
    """The exception and its causes, outermost first: type, text and frames (no local variables)."""
    chain: list[dict[str, Any]] = []
    is_cause, seen = False, set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = traceback.extract_tb(exc.__traceback__)
        chain.append(
            {
                "exc_type": type(exc).__name__,
                "exc_value": str(exc),
                "is_cause": is_cause,
                "frames": [{"filename": f.filename, "lineno": f.lineno, "name": f.name} for f in frames],
            }
        )
        if exc.__cause__ is not None:
            exc, is_cause = exc.__cause__, True
        elif not exc.__suppress_context__:
            exc, is_cause = exc.__context__, False
        else:
            exc = None
    return chain


def _fields(
    record: logging.LogRecord, hooks: Sequence[FieldHook], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """timestamp (UTC, from the record), level, logger and message first, then the bound ids and
    ``extra=`` fields (never in place of those four), then the hooks' edits, the exception and the stack."""
    fields: dict[str, Any] = {
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    ids = {k: extra[k] for k in _IDS.get() if k in extra}
    fields.update((k, v) for k, v in {**ids, **extra}.items() if k not in _HEAD)
    for hook in hooks:
        fields = hook(fields)
    if record.exc_info:
        fields["exception"] = _exception(record.exc_info[1])
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


class JsonFormatter(_LibJsonFormatter):
    """One JSON object per record: timestamp (UTC), level, logger, message, correlation ids, extras and,
    with an exception, its structured traceback (without local variables)."""

    def __init__(self, *, pre_chain: Sequence[FieldHook] | None = None) -> None:
        # ensure_ascii: U+2028 and friends stay escaped, so "one line" holds for every line reader.
        super().__init__(reserved_attrs=sorted(_RECORD_ATTRS), json_default=str, json_ensure_ascii=True)
        self._hooks = tuple(pre_chain or ())

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        _ADD_IDS.filter(record)  # a handler configured without the filter (tests, dagster.yaml) gets them too
        extra: dict[str, Any] = {}
        # The library's collection of the record's extras; its exc_info/stack_info strings give way to the
        # structured ``exception`` and ``stack`` fields, and a dict message stays the message only.
        super().add_fields(extra, record, {})
        log_data.update(_fields(record, self._hooks, extra))

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """The whole line through the alerts' redaction (by value pattern and by key)."""
        redacted: dict[str, Any] = redact(log_data)
        return redacted


class TextFormatter(logging.Formatter):
    """Human-readable single-line records for a terminal, with the same ids and redaction."""

    def __init__(self, *, pre_chain: Sequence[FieldHook] | None = None) -> None:
        super().__init__()
        self._hooks = tuple(pre_chain or ())

    def format(self, record: logging.LogRecord) -> str:
        _ADD_IDS.filter(record)
        extra = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}
        fields = _fields(record, self._hooks, extra)
        fields.pop("exception", None)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        fields = redact(fields)
        head = [fields.pop(k, "") for k in _HEAD]
        rest = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        return redact_text(f"{head[0]} [{head[1]:<9}] {head[3]} [{head[2]}] {rest}".rstrip())


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
    return installed_handler_level() is not None


def installed_handler_level() -> int | None:
    """The level of the handler :func:`configure_logging` installed (what the terminal shows), or None."""
    levels = [h.level for h in logging.getLogger().handlers if getattr(h, _HANDLER_MARK, False)]
    return min(levels) if levels else None


def configure_logging(
    level: int | str = "INFO",
    json: bool = True,
    *,
    stream: IO[str] | None = None,
    pre_chain: Sequence[FieldHook] | None = None,
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (default: the current stderr) as JSON lines (or
    readable text). ``pre_chain``: functions run on each line's fields after the standard ones (an upper
    layer's, e.g. the Dagster metadata of a job run in this process).

    Idempotent: calling it again replaces the handler it installed before instead of adding a second one.
    Returns the handler (tests and the CLI may want to remove or inspect it).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter(pre_chain=pre_chain) if json else TextFormatter(pre_chain=pre_chain))
    handler.addFilter(CorrelationFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
