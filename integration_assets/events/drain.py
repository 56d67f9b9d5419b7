"""One drain: take up to ``max_events`` from the queue in batches, apply each batch, report what happened.

This is what the Dagster op runs (one run per drain, launched by the queue sensor) and what
``integration-assets events drain`` runs in-process. Batches are large (default 10,000 events: one
transaction, one COPY and one merge per table each), because per-event transactions cannot reach the
throughput target (issue 3: ≥ 5,000 events/s per drain); mapping costs ~70 ms per contract and batch
whatever its size, so small batches waste most of their time there. The next batch is received and planned
(parsed, routed, mapped: CPU) while the current one is written (mostly waiting on the database), so the two
overlap: on the SQL queue in Postgres a worker thread receives and plans; on RabbitMQ, whose deliveries
belong to the drain's thread, that thread receives while the batch's transaction runs in a thread of its
own, and acks it there after the commit.

Failure handling per batch (every delivery ends applied, stale, ignored, duplicate, dead-lettered or given
back; ``DrainReport.balanced`` checks it):

- ``WarehouseUnavailable`` (refused, killed connection, timeout, deadlock): retried in place with capped
  exponential backoff and jitter, holding the deliveries (RabbitMQ heartbeats are answered meanwhile), for up
  to ``transient_budget_s`` (default 60 s, well inside the SQL queue's 300 s visibility timeout). Then the
  batch is *released* — given back with a delay **without spending an attempt** — and the drain stops,
  reporting the outage. A transient outage never dead-letters an event.
- ``WarehouseConfigError`` (schema not migrated): released, and the drain stops with the error.
- A value or constraint the warehouse refuses (``DataError``/``IntegrityError``): the batch is bisected until
  the event at fault is alone, and only that one is dead-lettered (check ``load_error``): one bad event
  never blocks the others (RELIABILITY.md: "unless each row is isolated, one such row aborts the batch").
- Anything else is a bug: the batch goes back through ``Queue.retry`` (spending an attempt, so a crash loop
  ends in the dead letters after ``max_attempts`` instead of looping for ever) and the error is raised.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa

from integration_assets.events.errors import (
    BatchRefused,
    EventError,
    WarehouseConfigError,
    WarehouseUnavailable,
)
from integration_assets.events.processor import BatchResult, Committed, EventProcessor, same_database
from integration_assets.queue import Delivery, Queue, QueueError, StaleDelivery, backoff_delay, open_queue
from integration_assets.queue.sql import SqlQueue
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine, is_postgres

log = logging.getLogger(__name__)

DEFAULT_BATCH = 10_000
DEFAULT_MAX_EVENTS = 50_000
# Two batches are held at a time (one written, the next planned), so RabbitMQ's prefetch is two batches.
MAX_PREFETCH = 20_000
# How long to top a RabbitMQ batch up after the first deliveries arrived (they come in network reads), and
# how long to wait for a first delivery before calling the queue empty (a consumer's first deliveries, or
# those following an ack, take a round trip to arrive).
_LINGER_S = 0.05
_BROKER_WAIT_S = 0.5


def new_drain_id() -> str:
    """Unique per launch; the sensor's run key and the prefix of every batch id (= load_id) of the drain."""
    return f"drain_{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"


@dataclass
class DrainReport:
    """Totals of one drain, plus the queue as it was before and after."""

    drain_id: str
    backend: str
    totals: BatchResult
    batches: int = 0
    seconds: float = 0.0
    depth_before: int | None = None
    depth_after: int | None = None
    oldest_age_s_before: float | None = None
    oldest_age_s_after: float | None = None
    dead_letters_moved: int = 0  # RabbitMQ: DLQ messages moved into the warehouse dead_letters table
    outage: str | None = None  # set when the drain stopped because the warehouse was unavailable
    batch_ids: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.totals.events_in / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        return self.totals.balanced

    def as_dict(self) -> dict[str, Any]:
        return {
            "drain_id": self.drain_id,
            "backend": self.backend,
            **self.totals.as_dict(),
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
            "queue_depth_before": self.depth_before,
            "queue_depth": self.depth_after,
            "oldest_age_s_before": self.oldest_age_s_before,
            "oldest_age_s": self.oldest_age_s_after,
            "dead_letters_moved": self.dead_letters_moved,
            "outage": self.outage,
            "balanced": self.balanced,
        }


class _Stop(EventError):
    """The drain cannot go on (warehouse down past the budget); carries what the last batch did."""

    def __init__(self, reason: str, result: BatchResult) -> None:
        super().__init__(reason)
        self.result = result


def drain_queue_url(url: str | None = None, *, batch_size: int = DEFAULT_BATCH) -> str:
    """The queue URL for a drain: on RabbitMQ the prefetch is raised to two batches (capped at 20,000) unless
    the URL sets it. RELIABILITY.md pins prefetch ≤ 50 to bound a crash loop's blast radius; a drain applies
    whole batches in one transaction, so its blast radius is the batch anyway, and deliveries caught in a
    crash loop are dead-lettered with check ``delivery_limit`` and replayable with ``events replay``."""
    url = (url or get_settings().queue_url or "sql").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "prefetch" for k, _ in query):
        return url
    query.append(("prefetch", str(min(MAX_PREFETCH, max(50, 2 * batch_size)))))
    return urlunsplit(parts._replace(query=urlencode(query)))


def open_drain_queue(url: str | None = None, *, batch_size: int = DEFAULT_BATCH) -> Queue:
    """The configured queue (INTEGRATION_QUEUE_URL), opened for draining."""
    return open_queue(drain_queue_url(url, batch_size=batch_size))


def receive_batch(queue: Queue, n: int, visibility_timeout_s: float, wait_s: float) -> list[Delivery]:
    """Up to ``n`` deliveries. The SQL queue hands out everything available in one claim. RabbitMQ pushes
    deliveries over the network, so an empty buffer right after subscribing or acking does not mean an empty
    queue: wait a little for the first one, then top the batch up for a few milliseconds."""
    if queue.backend != "sql":
        wait_s = max(wait_s, _BROKER_WAIT_S)
    got = queue.receive(n, visibility_timeout_s, wait_s=wait_s)
    if not got or len(got) >= n or queue.backend == "sql":
        return got
    deadline = time.monotonic() + _LINGER_S
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got += queue.receive(n - len(got), visibility_timeout_s, wait_s=min(0.01, left))
    return got


def _sleep(queue: Queue, seconds: float) -> None:
    """Wait without letting the broker connection die (a dropped connection would redeliver the batch
    and count an attempt against every message in it)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        queue.keepalive()


class Drainer:
    """Applies batches from ``queue`` to ``engine`` with the failure handling of the module docstring."""

    def __init__(
        self,
        queue: Queue,
        engine: sa.Engine,
        *,
        transient_budget_s: float = 60.0,
        ack_in_transaction: bool | None = None,
        after_commit: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.queue, self.engine = queue, engine
        self.processor = EventProcessor(engine)
        self.transient_budget_s = transient_budget_s
        self.ack_in_transaction = (
            same_database(queue, engine) if ack_in_transaction is None else ack_in_transaction
        )
        self.after_commit = after_commit

    def apply(self, deliveries: Sequence[Delivery], batch_id: str, plan: Any = None) -> BatchResult:
        """Apply one batch (``plan``: made ahead by the planner thread); raises ``_Stop`` when the warehouse
        stayed unavailable past the budget."""
        deadline = time.monotonic() + self.transient_budget_s
        attempt = 0
        while True:
            try:
                return self.processor.process(
                    deliveries,
                    batch_id,
                    queue=self.queue,
                    plan=plan,
                    ack_in_transaction=self.ack_in_transaction,
                    after_commit=self.after_commit,
                )
            except WarehouseUnavailable as exc:
                plan = None  # a failed transaction leaves the plan marked up: plan again
                attempt += 1
                delay = backoff_delay(attempt, base_s=0.5, cap_s=10.0)
                if time.monotonic() + delay > deadline:
                    self._release(deliveries, backoff_delay(attempt, base_s=5.0, cap_s=60.0))
                    raise _Stop(
                        str(exc), BatchResult(batch_id, events_in=len(deliveries), retried=len(deliveries))
                    ) from exc
                log.warning("batch %s: %s; retrying in %.1fs (attempt %d)", batch_id, exc, delay, attempt)
                _sleep(self.queue, delay)
            except WarehouseConfigError:
                self._release(deliveries, 0.0)
                raise
            except BatchRefused as exc:
                return self._isolate(deliveries, batch_id, exc)
            except Exception as exc:  # noqa: BLE001 - a bug: settle through retry (attempts), then re-raise
                self._retry(deliveries, f"{type(exc).__name__}: {exc}")
                raise

    def commit_ahead(self, deliveries: Sequence[Delivery], batch_id: str, plan: Any) -> Committed:
        """The batch's transaction alone, without touching the queue (run in the commit thread while the
        drain's thread receives the next batch); ``finish`` settles it."""
        return self.processor.commit(deliveries, batch_id, plan=plan)

    def finish(
        self, committing: Future[Committed], deliveries: Sequence[Delivery], batch_id: str
    ) -> BatchResult:
        """Settle a batch committed by ``commit_ahead`` (in the thread that received it). A batch whose
        transaction failed there goes through ``apply``: retried, bisected or settled as described above."""
        try:
            committed = committing.result()
        except Exception as exc:  # noqa: BLE001 - apply() classifies and handles it, on a fresh plan
            log.info("batch %s: %s: %s; applying it again", batch_id, type(exc).__name__, exc)
            return self.apply(deliveries, batch_id)
        return self.processor.settle(self.queue, committed, self.after_commit)

    def _isolate(self, deliveries: Sequence[Delivery], batch_id: str, exc: BatchRefused) -> BatchResult:
        if len(deliveries) == 1:
            reason = f"the warehouse refused the event: {exc}"
            result = BatchResult(batch_id, events_in=1, dead_lettered=1)
            result.reasons["load_error"] += 1
            try:
                self.queue.dead_letter(deliveries[0], reason, "load_error")
            except StaleDelivery:
                pass
            except QueueError as qexc:
                log.warning("dead-lettering %s failed: %s", deliveries[0].message.id, qexc)
                result.dead_lettered, result.retried = 0, 1
            return result
        log.warning(
            "batch %s refused by the warehouse (%s); bisecting %d events", batch_id, exc, len(deliveries)
        )
        half = len(deliveries) // 2
        result = BatchResult(batch_id)
        for suffix, part in (("a", deliveries[:half]), ("b", deliveries[half:])):
            result.add(self.apply(part, f"{batch_id}{suffix}"[:64]))
        return result

    def give_back(self, deliveries: Sequence[Delivery], totals: BatchResult) -> None:
        """A batch received ahead but not applied (the drain stops): release it without spending attempts."""
        self._release(deliveries, 0.0)
        totals.events_in += len(deliveries)
        totals.retried += len(deliveries)

    def _release(self, deliveries: Sequence[Delivery], delay_s: float) -> None:
        try:
            self.queue.release(deliveries, delay_s)
        except QueueError as exc:
            # The queue is down too (the SQL queue lives in the warehouse): the claims lapse after the
            # visibility timeout and the messages come back by themselves.
            log.warning("could not release %d delivery(ies): %s", len(deliveries), exc)

    def _retry(self, deliveries: Sequence[Delivery], reason: str) -> None:
        for d in deliveries:
            try:
                self.queue.retry(d, reason)
            except QueueError as exc:
                log.warning("could not retry %s: %s", d.message.id, exc)


def _worker_receiver(queue: Queue) -> SqlQueue | None:
    """A second handle on the SQL queue for the worker thread, so that on Postgres the next batch is
    claimed while this one is written (two database sessions, no shared connection). SQLite has one
    writer at a time and RabbitMQ deliveries belong to the consuming connection: both receive in the
    drain's own thread."""
    if not isinstance(queue, SqlQueue) or not is_postgres(queue.engine):
        return None
    return SqlQueue(
        queue.engine.url.render_as_string(hide_password=False),
        name=queue.name,
        max_attempts=queue.max_attempts,
        backoff_base_s=queue.backoff_base_s,
        backoff_cap_s=queue.backoff_cap_s,
    )


def _move_dead_letters(queue: Queue) -> int:
    """RabbitMQ: move the broker's dead-letter queue into the warehouse ``dead_letters`` table now (after a
    batch that dead-lettered events), so that a later copy of the same event is recognised as one."""
    try:
        return queue.drain_dead_letters()
    except QueueError as exc:
        log.warning("moving broker dead letters into the warehouse failed: %s", exc)
        return 0


def _queue_state(queue: Queue) -> tuple[int | None, float | None]:
    try:
        return queue.depth(), queue.oldest_age_seconds()
    except QueueError as exc:
        log.warning("queue depth unavailable: %s", exc)
        return None, None


def drain(
    queue: Queue | None = None,
    *,
    engine: sa.Engine | None = None,
    max_events: int = DEFAULT_MAX_EVENTS,
    batch_size: int = DEFAULT_BATCH,
    drain_id: str | None = None,
    wait_s: float = 0.0,
    visibility_timeout_s: float = 300.0,
    transient_budget_s: float = 60.0,
    ack_in_transaction: bool | None = None,
    after_commit: Callable[[BatchResult], None] | None = None,
) -> DrainReport:
    """Apply up to ``max_events`` queued events in batches of ``batch_size``; returns the report.

    ``queue`` defaults to INTEGRATION_QUEUE_URL (opened and closed here), ``engine`` to the warehouse.
    ``wait_s`` waits that long for a first event when the queue is empty. Raises ``WarehouseConfigError``
    when the schema is missing; a warehouse outage is reported in ``DrainReport.outage``, not raised."""
    if max_events < 1 or batch_size < 1:
        raise ValueError(f"max_events and batch_size must be >= 1 ({max_events=}, {batch_size=})")
    own = queue is None
    queue = queue or open_drain_queue(batch_size=batch_size)
    engine = engine or get_engine(get_settings().warehouse_url)
    report = DrainReport(drain_id or new_drain_id(), queue.backend, BatchResult(drain_id or ""))
    report.totals.batch_id = report.drain_id
    drainer = Drainer(
        queue,
        engine,
        transient_budget_s=transient_budget_s,
        ack_in_transaction=ack_in_transaction,
        after_commit=after_commit,
    )
    planner = EventProcessor(engine)  # prepares the next batch in a worker thread while this one is written
    receiver = _worker_receiver(queue)
    taken = 0
    t0 = time.perf_counter()
    try:
        report.depth_before, report.oldest_age_s_before = _queue_state(queue)
        # Acks that follow the commit (RabbitMQ) are sent by this thread, which also receives: the batch's
        # transaction then runs in a thread of its own while the next batch is received.
        commit_ahead = receiver is None and not drainer.ack_in_transaction
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-plan") as pool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-commit") as committer,
        ):

            def take(q: Queue, first: bool) -> list[Delivery]:
                nonlocal taken
                want = min(batch_size, max_events - taken)
                if want <= 0:
                    return []
                deliveries = receive_batch(q, want, visibility_timeout_s, wait_s if first else 0.0)
                taken += len(deliveries)
                return deliveries

            def prepare(deliveries: list[Delivery] | None, first: bool) -> tuple[list[Delivery], Any] | None:
                """In the worker: receive (SQL queue on Postgres) and plan one batch."""
                if deliveries is None:
                    assert receiver is not None
                    deliveries = take(receiver, first)
                    if not deliveries:
                        return None
                try:
                    plan = planner.plan(deliveries)
                except Exception:  # noqa: BLE001 - apply() plans again, and settles and reports the error
                    plan = None
                return deliveries, plan

            def fetch(first: bool) -> Future[tuple[list[Delivery], Any] | None] | None:
                if receiver is not None:
                    return pool.submit(prepare, None, first)
                # RabbitMQ (and SQLite): receive here; a delivery belongs to this connection and thread.
                try:
                    deliveries = take(queue, first)
                except QueueError as exc:
                    report.outage = f"queue unavailable: {exc}"
                    return None
                return pool.submit(prepare, deliveries, first) if deliveries else None

            def settle_ahead(following: Future[tuple[list[Delivery], Any] | None] | None) -> None:
                """Give back a batch taken ahead that will not be applied (the drain stops)."""
                try:
                    item = following.result() if following is not None else None
                except QueueError:
                    return
                if item is not None:
                    drainer.give_back(item[0], report.totals)

            pending = fetch(first=True)
            while pending is not None:
                try:
                    item = pending.result()
                except QueueError as exc:
                    report.outage = f"queue unavailable: {exc}"
                    break
                if item is None:
                    break
                deliveries, plan = item
                report.batches += 1
                batch_id = f"{report.drain_id}.{report.batches}"
                report.batch_ids.append(batch_id)
                committing = (
                    committer.submit(drainer.commit_ahead, deliveries, batch_id, plan)
                    if commit_ahead
                    else None
                )
                following = fetch(first=False)  # taken and planned while this batch is written
                try:
                    if committing is not None:
                        result = drainer.finish(committing, deliveries, batch_id)
                    else:
                        result = drainer.apply(deliveries, batch_id, plan)
                except _Stop as stop:
                    report.totals.add(stop.result)
                    report.outage = str(stop)
                    log.warning(
                        "drain %s stopped after %d batch(es): %s", report.drain_id, report.batches, stop
                    )
                    settle_ahead(following)
                    break
                except BaseException:
                    settle_ahead(following)
                    raise
                report.totals.add(result)
                if result.dead_lettered:
                    report.dead_letters_moved += _move_dead_letters(queue)
                pending = following
            if report.outage:
                log.warning("drain %s stopped: %s", report.drain_id, report.outage)
        report.dead_letters_moved += _move_dead_letters(queue)
        report.depth_after, report.oldest_age_s_after = _queue_state(queue)
    finally:
        report.seconds = time.perf_counter() - t0
        if own:
            queue.close()
    log.info("drain %s: %s", report.drain_id, report.as_dict())
    return report
