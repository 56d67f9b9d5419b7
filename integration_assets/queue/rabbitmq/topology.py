"""RabbitMQ topology: the URL options (``RabbitMQConfig``) and the exchanges, queues and bindings they name.

All names are prefixed with ``prefix`` (URL option, default ``integration``) so that several environments and
tests can share a broker::

    <p>.events (direct exchange) --event--> <p>.events (quorum queue)
        x-delivery-limit = max_attempts - 1   explicit: RabbitMQ 3.10 has no default limit
        x-dead-letter-exchange = <p>.dlx, x-dead-letter-strategy = at-least-once, x-overflow = reject-publish
    <p>.dlx (direct exchange) --dead--> <p>.dlq (quorum queue; drained into the warehouse dead_letters)
    <p>.retry (direct exchange) --<ms>--> <p>.retry.<ms>ms (quorum queue per delay tier)
        x-message-ttl = <ms>, dead-letters (at-least-once) back to <p>.events with routing key ``event``

The delay of a retry is rounded up to the next tier (``retry_delays_s``), because a quorum queue only expires
messages at its head, so each delay needs its own queue.

URL options (removed before the URL is handed to pika, which accepts its own, e.g. ``heartbeat``)::

    prefix, max_attempts, prefetch, confirm_timeout_s, reconnect_max_s, retry_delays_s (comma list),
    max_length, backoff_base_s, backoff_cap_s
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pika.adapters.blocking_connection import BlockingChannel

from integration_assets.queue.base import QueueConfigError

EVENT_KEY = "event"
DEAD_KEY = "dead"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


@dataclass(frozen=True)
class RabbitMQConfig:
    """Connection URL for pika plus our options; built from an ``amqp://`` URL by ``from_url``."""

    url: str
    prefix: str = "integration"
    max_attempts: int = 5
    # Bounded prefetch (docs/RELIABILITY.md, "Facts the design relies on": <= 50): with a crash-looping
    # consumer every outstanding delivery counts towards the delivery limit, so the window is also the blast
    # radius.
    prefetch: int = 50
    confirm_timeout_s: float = 10.0
    # Reconnect budget per call. Short by default: a webhook request waits on it before answering 503.
    reconnect_max_s: float = 5.0
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    max_length: int | None = None
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0

    _OPTIONS = (
        "prefix",
        "max_attempts",
        "prefetch",
        "confirm_timeout_s",
        "reconnect_max_s",
        "retry_delays_s",
        "max_length",
        "backoff_base_s",
        "backoff_cap_s",
    )

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise QueueConfigError(f"prefix must match {_PREFIX_RE.pattern}: {self.prefix=!r}")
        # AMQP's prefetch-count is a 16-bit field; a batch-applying consumer (events drain) holds two batches.
        if self.max_attempts < 1 or not 1 <= self.prefetch <= 65535:
            raise QueueConfigError(
                f"need max_attempts >= 1 and 1 <= prefetch <= 65535 ({self.max_attempts=}, {self.prefetch=})"
            )
        if not self.retry_delays_s or any(d <= 0 for d in self.retry_delays_s):
            raise QueueConfigError(f"retry_delays_s must be positive: {self.retry_delays_s=}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RabbitMQConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise QueueConfigError(f"not an AMQP URL: scheme {parts.scheme!r}")
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in pairs if k in cls._OPTIONS}
        rest = [(k, v) for k, v in pairs if k not in cls._OPTIONS]
        kwargs: dict[str, Any] = {}
        try:
            for key, value in ours.items():
                if key == "prefix":
                    kwargs[key] = value
                elif key in ("max_attempts", "prefetch", "max_length"):
                    kwargs[key] = int(value)
                elif key == "retry_delays_s":
                    kwargs[key] = tuple(float(v) for v in value.split(",") if v.strip())
                else:
                    kwargs[key] = float(value)
        except ValueError as exc:
            raise QueueConfigError(f"bad queue URL option: {exc}") from exc
        kwargs.update(overrides)
        return cls(url=urlunsplit(parts._replace(query=urlencode(rest))), **kwargs)

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def queue(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def retry_exchange(self) -> str:
        return f"{self.prefix}.retry"

    @property
    def retry_tiers_ms(self) -> tuple[int, ...]:
        return tuple(sorted({max(1, int(d * 1000)) for d in self.retry_delays_s}))

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.prefix}.retry.{delay_ms}ms"

    @property
    def delivery_limit(self) -> int:
        # On 3.10 a quorum queue with x-delivery-limit=L delivers a message L+1 times, then dead-letters it
        # (verified on this broker: limit 2 gave deliveries with x-delivery-count 0, 1, 2).
        return self.max_attempts - 1

    def main_queue_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dlx,
            "x-dead-letter-routing-key": DEAD_KEY,
            # Classic dead-lettering republishes without confirms (lossy); at-least-once needs reject-publish.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        if self.max_length is not None:
            args["x-max-length"] = self.max_length
        return args

    def retry_queue_arguments(self, delay_ms: int) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": self.exchange,
            "x-dead-letter-routing-key": EVENT_KEY,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def redacted_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" if parts.password else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=""))


def topology(config: RabbitMQConfig) -> list[tuple[str, dict[str, Any]]]:
    """The declarations, in order, as (channel method, keyword arguments): shared by the consumer's blocking
    channel and the publisher's asynchronous one so both always declare the same thing."""
    steps: list[tuple[str, dict[str, Any]]] = [
        ("exchange_declare", {"exchange": config.exchange, "exchange_type": "direct", "durable": True}),
        ("exchange_declare", {"exchange": config.dlx, "exchange_type": "direct", "durable": True}),
        ("exchange_declare", {"exchange": config.retry_exchange, "exchange_type": "direct", "durable": True}),
        ("queue_declare", {"queue": config.dlq, "durable": True, "arguments": {"x-queue-type": "quorum"}}),
        ("queue_bind", {"queue": config.dlq, "exchange": config.dlx, "routing_key": DEAD_KEY}),
        (
            "queue_declare",
            {"queue": config.queue, "durable": True, "arguments": config.main_queue_arguments()},
        ),
        ("queue_bind", {"queue": config.queue, "exchange": config.exchange, "routing_key": EVENT_KEY}),
    ]
    for delay_ms in config.retry_tiers_ms:
        name = config.retry_queue(delay_ms)
        steps.append(
            (
                "queue_declare",
                {"queue": name, "durable": True, "arguments": config.retry_queue_arguments(delay_ms)},
            )
        )
        steps.append(
            ("queue_bind", {"queue": name, "exchange": config.retry_exchange, "routing_key": str(delay_ms)})
        )
    return steps


def declare_topology(channel: BlockingChannel, config: RabbitMQConfig) -> None:
    """Declare exchanges, queues and bindings (idempotent). Raises pika's ChannelClosedByBroker (406) when a
    queue already exists with other arguments: queue arguments cannot change, delete the queue or use a
    policy."""
    for method, kwargs in topology(config):
        getattr(channel, method)(**kwargs)


def delete_topology(channel: BlockingChannel, config: RabbitMQConfig) -> None:
    """Delete this prefix's queues and exchanges (messages included), whatever arguments they were declared
    with."""
    for q in [config.queue, config.dlq, *(config.retry_queue(ms) for ms in config.retry_tiers_ms)]:
        channel.queue_delete(q)
    for ex in (config.exchange, config.dlx, config.retry_exchange):
        channel.exchange_delete(ex)
