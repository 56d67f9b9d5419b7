"""The queue interface between the webhook receiver (producer) and the event processing (consumer).

Delivery is at least once on every backend: a message is handed out again if its consumer crashes before
``ack``, and a provider may send the same event twice. Consumers therefore deduplicate on the message id
(the provider's event id) in the warehouse, in the same transaction as the effect, and ack after commit.

Exception hierarchy (every failure is transient or terminal, docs/ARCHITECTURE.md; the two branches derive from
``integration_assets.errors.TransientError`` / ``TerminalError``)::

    QueueError
    ├── TransientQueueError          retry later; for a webhook: answer 503 so the provider retries
    │   ├── QueueUnavailable         broker/database unreachable, connection lost, no confirm in time
    │   └── PublishNacked            the broker refused to take responsibility (internal error, queue full)
    └── TerminalQueueError           retrying the same call cannot succeed without a change
        ├── QueueConfigError         bad URL, missing table, topology declared with other arguments
        ├── PublishUnroutable        no queue bound: nothing was stored (mandatory publish came back)
        ├── InvalidMessage           a Message that breaks the invariants below
        └── StaleDelivery            the delivery's claim/channel is gone; another consumer owns it now
"""

from __future__ import annotations

import abc
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from integration_assets.errors import IntegrationError, TerminalError, TransientError

if TYPE_CHECKING:
    import sqlalchemy as sa

# A provider's name (``providers`` registry). The queue knows no provider: it checks the shape only.
Source = str
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

RetryOutcome = Literal["retried", "dead_lettered"]

# Column sizes of the queue table and of dead_letters (natural_key is String(255)).
MAX_ID_CHARS = 255
MAX_EVENT_TYPE_CHARS = 128
# Reasons are stored and shown to operators; a stack trace belongs in the logs, not in every message copy.
MAX_REASON_CHARS = 2000
# Set by the receiver on a message it could not make an event of (a bad element of a HubSpot batch): the
# drain dead-letters it at once with this check and reason, and the batch's other elements go on.
REJECT_CHECK_HEADER = "x-receiver-check"
REJECT_REASON_HEADER = "x-receiver-reason"


# --------------------------------------------------------------------------------------------- errors
class QueueError(IntegrationError):
    """Base of every queue failure. ``message_ids`` names the messages concerned when only some failed."""

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, message_ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message_ids: tuple[str, ...] = tuple(message_ids)


class TransientQueueError(QueueError, TransientError):
    transient = True


class TerminalQueueError(QueueError, TerminalError):
    transient = False


class QueueUnavailable(TransientQueueError):
    """The backend cannot be reached or did not confirm in time; nothing may be assumed stored."""


class PublishNacked(TransientQueueError):
    """The broker nacked the publish (internal error or ``overflow=reject-publish`` on a full queue)."""


class QueueConfigError(TerminalQueueError):
    """Bad queue URL or options, schema not migrated, or a queue that exists with different arguments."""


class PublishUnroutable(TerminalQueueError):
    """A mandatory publish was returned: no queue is bound, so the message was not stored anywhere."""


class InvalidMessage(TerminalQueueError, ValueError):
    """A ``Message`` that violates its invariants (empty id, unknown source, naive timestamp, ...)."""


class StaleDelivery(TerminalQueueError):
    """The delivery can no longer be settled by this consumer (claim expired and taken over, or the
    connection it came on is gone). The message is (or will be) delivered again; nothing was changed."""


# ------------------------------------------------------------------------------------------- records
def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Message:
    """One provider event as accepted by the webhook receiver.

    ``id`` is the idempotency key, made by the provider's module (``providers``): ``stripe:evt_…``,
    ``easypost:evt_…``, and for HubSpot, whose eventId is not unique, ``hubspot:<eventId>:<digest of the fields
    that identify the change>``. ``source`` is the provider's name. ``body`` is the verified payload (for
    HubSpot, one element of the verified array). ``headers`` holds only non-secret request headers: never
    signatures, tokens or cookies. ``attempts`` is 0 when publishing; on a received message it counts the
    deliveries so far, including the current one.
    """

    id: str
    source: Source
    event_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    received_at: datetime = field(default_factory=utcnow)
    attempts: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or len(self.id) > MAX_ID_CHARS:
            raise InvalidMessage(f"message id must be 1..{MAX_ID_CHARS} characters: {self.id=!r}")
        if not isinstance(self.source, str) or not SOURCE_RE.match(self.source):
            raise InvalidMessage(f"source must be a provider name, got {self.source!r} for {self.id=}")
        if (
            not isinstance(self.event_type, str)
            or not self.event_type
            or len(self.event_type) > MAX_EVENT_TYPE_CHARS
        ):
            raise InvalidMessage(f"event_type must be 1..{MAX_EVENT_TYPE_CHARS} characters for {self.id=}")
        if not isinstance(self.body, bytes):
            raise InvalidMessage(f"body must be bytes for {self.id=}")
        if not isinstance(self.received_at, datetime) or self.received_at.utcoffset() is None:
            raise InvalidMessage(f"received_at must be a timezone-aware datetime for {self.id=}")
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in self.headers.items()):
            raise InvalidMessage(f"headers must map str to str for {self.id=}")
        if self.attempts < 0:
            raise InvalidMessage(f"attempts must be >= 0 for {self.id=}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received message plus the backend's handle to settle it (ack, retry, release or dead-letter).

    ``redelivered`` is True when the message was handed out before (crash, visibility timeout, retry).
    """

    message: Message
    redelivered: bool
    receipt: Any = field(repr=False, compare=False)

    @property
    def attempts(self) -> int:
        return self.message.attempts


@dataclass(frozen=True, slots=True)
class QueueDeadLetter:
    """One message the queue itself gives up on (delivery limit, attempts spent, key collision at publish,
    a broker dead-letter queue's content), handed to the ``DeadLetterSink`` to be recorded. Not a
    ``Message``: what comes back from a broker's dead-letter queue may be malformed and must still be kept."""

    source: str
    message_id: str
    event_type: str
    body: bytes
    headers: Mapping[str, Any]
    received_at: datetime | None
    reason: str
    check_name: str
    attempts: int
    details: Mapping[str, Any]  # backend facts kept with the dead letter (x-death, queue name, ...)

    @classmethod
    def of(
        cls, message: Message, reason: str, check_name: str, attempts: int, details: Mapping[str, Any]
    ) -> QueueDeadLetter:
        return cls(
            source=message.source,
            message_id=message.id,
            event_type=message.event_type,
            body=message.body,
            headers=message.headers,
            received_at=message.received_at,
            reason=reason,
            check_name=check_name,
            attempts=attempts,
            details=details,
        )


class DeadLetterSink(Protocol):
    """Records dead-lettered messages in the warehouse, inside the caller's transaction ``connection``.

    The queue writes no warehouse rows but its own queue table: whoever opens a queue passes the writer of
    the ``dead_letters`` table (``dead_letters.store``) as the sink. The SQL queue calls it in the same
    transaction that deletes the message's row, so an event is always in exactly one of the two tables;
    RabbitMQ calls it when it moves its dead-letter queue into the warehouse, and acks after the commit."""

    def __call__(self, connection: sa.Connection, items: Sequence[QueueDeadLetter], /) -> None: ...


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What a publish did besides storing messages (backends that deduplicate on the key at publish)."""

    # The source of each message that had the same key and content as a message still queued (stored once)
    duplicates: tuple[str, ...] = ()
    # ... and of each that had the same key with other content (dead-lettered, check ``key_collision``)
    collisions: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------- backoff
def backoff_delay(
    attempt: int,
    *,
    base_s: float = 2.0,
    cap_s: float = 600.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Capped exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential Backoff And
    Jitter"): half of the exponential step is fixed, half random, so retries of a burst spread out but
    never come back immediately. ``attempt`` is the 1-based number of the attempt that just failed."""
    step = min(cap_s, base_s * math.pow(2, max(0, attempt - 1)))
    return step / 2 + rng() * step / 2


def truncate_reason(reason: str) -> str:
    reason = str(reason)
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


# --------------------------------------------------------------------------------------------- queue
class Queue(abc.ABC):
    """A durable, at-least-once work queue of provider events, with retries and a dead-letter path.

    Not thread-safe: use one instance per thread (the webhook receiver keeps one in its publisher thread).
    """

    backend: ClassVar[str]  # "sql" or "rabbitmq": a label for reports and cursors, not for branching on
    name: str  # the logical queue (SQL: its name in the queue table; RabbitMQ: the main queue's name)
    max_attempts: int
    # False when the store takes one writer at a time (SQLite): publishers in one process then take turns
    # instead of queueing on the database lock, where a busy loser can wait past a request's timeout.
    concurrent_writers: bool = True
    # Set by each ``publish_many`` of a backend that deduplicates at publish (the SQL queue).
    last_publish: PublishOutcome = PublishOutcome()
    # Records the dead letters this queue makes (``open_queue(..., dead_letter_sink=...)``). A queue opened
    # without one works until it has to dead-letter a message; then it raises ``QueueConfigError``.
    dead_letter_sink: DeadLetterSink | None = None

    @abc.abstractmethod
    def publish_many(self, messages: Sequence[Message]) -> None:
        """Store ``messages`` durably; return only once all are stored (a committed row, or publisher
        confirms from RabbitMQ). Raises ``TransientQueueError`` (e.g. ``QueueUnavailable``) or
        ``TerminalQueueError`` otherwise, in which case nothing may be assumed stored (some may be: the
        caller's retry can duplicate them, which consumers tolerate)."""

    def publish(self, message: Message) -> None:
        """Store one message durably (see ``publish_many``)."""
        self.publish_many([message])

    @abc.abstractmethod
    def receive(
        self, max_messages: int = 100, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        """Claim up to ``max_messages`` messages, waiting up to ``wait_s`` for the first one.

        A claimed message that is not settled within ``visibility_timeout_s`` becomes visible again (SQL);
        on RabbitMQ it stays reserved until this connection acks it or closes. Messages already delivered
        ``max_attempts`` times without being settled are dead-lettered here instead of being returned."""

    def receive_batch(
        self, max_messages: int, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        """Like ``receive``, for a consumer that applies whole batches: returns as many as are available up
        to ``max_messages``. A backend that hands out everything available in one claim (SQL) returns at
        once; one whose deliveries arrive over the network (RabbitMQ) waits a little for the first ones even
        when ``wait_s`` is 0, then tops the batch up for a few milliseconds."""
        return self.receive(max_messages, visibility_timeout_s, wait_s=wait_s)

    def concurrent_receiver(self) -> Queue | None:
        """A second handle on this queue that may ``receive`` in another thread while this one is in use
        (so a consumer can claim its next batch while it writes this one); deliveries it hands out are
        settled through either handle. None when receiving must stay on this handle's thread: one writer
        at a time (SQLite), or deliveries that belong to this handle's connection (RabbitMQ). The caller
        closes the handle it gets."""
        return None

    def supports_transactional_ack(self, engine: sa.Engine) -> bool:
        """True when ``ack(..., connection=c)`` with a connection ``c`` of ``engine`` deletes the messages
        inside ``c``'s transaction: the consumer then commits its effect, its event-id ledger row, the dead
        letters of what it rejected (``dead_letters.store``) and the ack atomically (exactly once). Only
        the SQL queue whose table lives in the database ``engine`` points at can."""
        return False

    @abc.abstractmethod
    def ack(self, deliveries: Sequence[Delivery], *, connection: sa.Connection | None = None) -> None:
        """Remove processed messages for good. Call only after the effect is committed, or pass the
        effect's ``connection`` when ``supports_transactional_ack(connection.engine)`` (else
        ``QueueConfigError``): the removal then commits or rolls back with it. Acking a delivery whose claim
        is stale is not an error: the message was processed, and a redelivery of it will be a no-op for an
        idempotent consumer."""

    @abc.abstractmethod
    def retry(self, delivery: Delivery, reason: str, delay_s: float | None = None) -> RetryOutcome:
        """Transient failure: put the message back after ``delay_s`` (default: capped exponential backoff
        with jitter on its attempt count). Once it has used ``max_attempts`` attempts it is dead-lettered
        instead, with ``reason``; the return value says which happened."""

    @abc.abstractmethod
    def release(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        """Give messages back without spending an attempt: the failure was not theirs (e.g. the warehouse
        is down). A transient outage must never dead-letter an event; this is how a consumer avoids it."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str, check_name: str) -> None:
        """Permanent failure (unparseable, fails its contract, unknown event type): take the message out of
        the queue at once and have it recorded, with ``reason`` and ``check_name``, by the queue's
        ``DeadLetterSink``: the SQL queue deletes its row and calls the sink in one transaction; RabbitMQ
        moves it to its dead-letter queue, from where ``drain_dead_letters`` hands it to the sink. Raises
        ``StaleDelivery`` when the delivery is no longer this consumer's to settle (nothing recorded)."""

    def drain_dead_letters(self, max_messages: int = 1000) -> int:
        """Hand dead-lettered messages held by the broker to the ``DeadLetterSink``; returns how many were
        moved. A no-op for backends that record dead letters directly."""
        return 0

    def record_dead_letters(self, connection: sa.Connection, items: Sequence[QueueDeadLetter]) -> None:
        """Hand ``items`` to the dead-letter sink inside ``connection``'s transaction."""
        if not items:
            return
        if self.dead_letter_sink is None:
            raise QueueConfigError(
                f"{self!r} has no dead-letter sink: open it with dead_letter_sink=dead_letters.store's writer "
                f"to dead-letter {len(items)} message(s)"
            )
        self.dead_letter_sink(connection, items)

    @abc.abstractmethod
    def depth(self) -> int:
        """Messages waiting to be processed (ready, delayed for retry and, where the backend can see them,
        claimed but not yet acked)."""

    @abc.abstractmethod
    def oldest_age_seconds(self) -> float | None:
        """Age of the oldest message waiting (0.0 when empty; None when the backend cannot tell)."""

    def keepalive(self) -> None:  # noqa: B027 - optional hook, a no-op unless the backend needs one
        """Let the backend service its connection while the caller is idle (e.g. AMQP heartbeats)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. Unacked deliveries go back to the queue (at once or at their timeout)."""

    def __enter__(self) -> Queue:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
