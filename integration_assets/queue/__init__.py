"""Durable event queue: one interface (``Queue``), two backends (SQL table, RabbitMQ), chosen by URL.

Plain Python, no Dagster: the webhook receiver publishes, the event-processing step consumes.
"""

from integration_assets.queue.base import (
    REJECT_CHECK_HEADER,
    REJECT_REASON_HEADER,
    DeadLetterSink,
    Delivery,
    InvalidMessage,
    Message,
    PublishNacked,
    PublishOutcome,
    PublishUnroutable,
    Queue,
    QueueConfigError,
    QueueDeadLetter,
    QueueError,
    QueueUnavailable,
    RetryOutcome,
    Source,
    StaleDelivery,
    TerminalQueueError,
    TransientQueueError,
    backoff_delay,
)
from integration_assets.queue.factory import open_queue

__all__ = [
    "REJECT_CHECK_HEADER",
    "REJECT_REASON_HEADER",
    "DeadLetterSink",
    "Delivery",
    "InvalidMessage",
    "Message",
    "PublishNacked",
    "PublishOutcome",
    "PublishUnroutable",
    "Queue",
    "QueueConfigError",
    "QueueDeadLetter",
    "QueueError",
    "QueueUnavailable",
    "RetryOutcome",
    "Source",
    "StaleDelivery",
    "TerminalQueueError",
    "TransientQueueError",
    "backoff_delay",
    "open_queue",
]
