"""Pick the queue backend from ``INTEGRATION_QUEUE_URL``.

- unset or ``sql`` (optionally ``sql?name=events&max_attempts=5``): the embedded queue table in the
  warehouse database (``INTEGRATION_WAREHOUSE_URL``), so the demo needs nothing installed;
- ``amqp://`` / ``amqps://``: RabbitMQ; options in the query string (see ``queue.rabbitmq.topology``), the
  warehouse URL is where its dead-letter queue is drained to.

Whoever opens a queue passes the writer of the ``dead_letters`` table as ``dead_letter_sink``: the queue
package writes no warehouse rows but its own queue table (``queue.base.DeadLetterSink``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from integration_assets.queue.base import DeadLetterSink, Queue, QueueConfigError
from integration_assets.queue.sql import SqlQueue
from integration_assets.settings import get_settings

_SQL_OPTIONS = {"name": str, "max_attempts": int, "backoff_base_s": float, "backoff_cap_s": float}


def open_queue(
    url: str | None = None,
    *,
    warehouse_url: str | None = None,
    dead_letter_sink: DeadLetterSink | None = None,
) -> Queue:
    """The configured event queue (no connection is made until it is used)."""
    settings = get_settings()
    url = (url or settings.queue_url or "sql").strip()
    warehouse_url = warehouse_url or settings.warehouse_url
    parts = urlsplit(url)
    if parts.scheme in ("amqp", "amqps"):
        # lazy: pika loads only for an amqp:// queue, saves ~90 ms
        from integration_assets.queue.rabbitmq import RabbitMQQueue

        return RabbitMQQueue(url, warehouse_url=warehouse_url, dead_letter_sink=dead_letter_sink)
    if url == "sql" or (url.startswith("sql?") and not parts.netloc):
        options: dict[str, object] = {}
        for key, value in parse_qsl(url.partition("?")[2], keep_blank_values=True):
            if key not in _SQL_OPTIONS:
                raise QueueConfigError(
                    f"unknown option {key!r} in INTEGRATION_QUEUE_URL (sql accepts {sorted(_SQL_OPTIONS)})"
                )
            try:
                options[key] = _SQL_OPTIONS[key](value)
            except ValueError as exc:
                raise QueueConfigError(f"bad value for {key!r} in INTEGRATION_QUEUE_URL: {exc}") from exc
        return SqlQueue(warehouse_url, dead_letter_sink=dead_letter_sink, **options)  # type: ignore[arg-type]
    raise QueueConfigError(
        f"INTEGRATION_QUEUE_URL must be 'sql' or an amqp:// URL, got scheme {parts.scheme!r}"
    )
