"""How the receiver runs under uvicorn: with the project's JSON logs, and uvicorn's httptools protocol plus
the two limits on a request's header block that it lacks.

Logs: :func:`serve` installs ``observability.logging`` on the root logger and hands uvicorn
``log_config=None``, so uvicorn's own loggers propagate to it instead of getting uvicorn's text
formatter. For several workers use the factory, which installs the logs in each worker::

    PROMETHEUS_MULTIPROC_DIR=/run/receiver-metrics \
        uvicorn --factory integration_assets.webhooks.server:receiver_app --workers 4

(``/metrics`` then merges every worker's counters from that directory; it must exist and be emptied
before the workers start.)

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and the app cuts a body that dribbles in
(``WebhookConfig.body_timeout_s``), but nothing bounds the time or the size of the header block itself: a
client sending a header byte now and then holds its connection (and a slot of ``limit_concurrency``) for
ever. Here a request's headers must arrive within ``HEADER_TIMEOUT_S`` of the connection or of the request's
first byte, and be at most ``MAX_HEADER_BYTES``; otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from integration_assets.observability.logging import configure_logging
from integration_assets.webhooks.app import create_app

HEADER_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024


class ReceiverProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a deadline and a size cap on each request's header block."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_header_bytes: int = MAX_HEADER_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # a new connection waits for its first request's headers
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counting = self._in_headers
        super().data_received(data)
        if counting and self._in_headers:  # still in the header block after this chunk
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # the next request on a keep-alive connection
            self._in_headers, self._header_bytes = True, 0
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_bytes = False, 0
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self._in_headers:
            self._close()

    def _close(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.close()


def receiver_app() -> Starlette:
    """The receiver app with JSON logs installed: the factory for ``uvicorn --factory --workers N``.

    uvicorn has configured its own loggers with its text formatter in the worker by the time it calls the
    factory; they are handed to the root handler (an access log switched off has no handler and stays off).
    """
    configure_logging()
    for name in ("uvicorn", "uvicorn.access"):
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
    return create_app()


def serve(*, host: str, port: int, log_level: str, access_log: bool, **options: Any) -> None:
    """Run the receiver in this process until it is stopped; ``log_level`` is the root logger's too."""
    configure_logging(log_level)
    uvicorn.run(
        create_app(),
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        log_config=None,
        **options,
    )
