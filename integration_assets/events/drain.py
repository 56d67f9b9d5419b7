"""One drain: take up to ``max_events`` from the queue in batches, apply each batch, report what happened.

The reasoning: docs/DESIGN.md, "Draining the queue (events/drain.py)".
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.events.batch import BatchRunner, DrainStopped
from integration_assets.events.extract import Plan, Planner
from integration_assets.events.results import BatchResult
from integration_assets.observability.logging import correlation
from integration_assets.queue import Delivery, Queue, QueueError, open_queue
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine

log = logging.getLogger(__name__)

DEFAULT_BATCH = 10_000
DEFAULT_MAX_EVENTS = 50_000
# Two batches are held at a time (one written, the next planned), so RabbitMQ's prefetch is two batches.
MAX_PREFETCH = 20_000

# A batch received and planned (the plan is None when planning failed: the batch is planned again, and its
# error settled and reported, when it is applied).
Prepared = tuple[list[Delivery], Plan | None]


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


def drain_queue_url(url: str | None = None, *, batch_size: int = DEFAULT_BATCH) -> str:
    """The queue URL for a drain: on RabbitMQ the prefetch is raised to two batches (capped at 20,000) unless
    the URL sets it. docs/RELIABILITY.md pins prefetch ≤ 50 to bound a crash loop's blast radius; a drain
    applies whole batches in one transaction, so its blast radius is the batch anyway, and deliveries caught
    in a crash loop are dead-lettered with check ``delivery_limit`` and replayable with ``events replay``."""
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
    """The configured queue (INTEGRATION_QUEUE_URL), opened for draining; its dead letters are recorded by
    ``dead_letters.store``."""
    return open_queue(drain_queue_url(url, batch_size=batch_size), dead_letter_sink=write_event_dead_letters)


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


@dataclass
class _Limits:
    max_events: int
    batch_size: int
    wait_s: float
    visibility_timeout_s: float


class _BatchLoop:
    """The batches of one drain. The next batch is received and planned in ``planning`` (a worker thread)
    while the current one is written. On the SQL queue in Postgres the worker receives too, through its own
    handle (``receiver``); otherwise this thread receives (a RabbitMQ delivery belongs to its connection and
    thread), and when the ack follows the commit the batch's transaction runs in ``committing`` so that this
    thread can receive meanwhile, and acks after the commit."""

    planning: ThreadPoolExecutor
    committing: ThreadPoolExecutor

    def __init__(self, queue: Queue, runner: BatchRunner, report: DrainReport, limits: _Limits) -> None:
        self.queue, self.runner, self.report, self.limits = queue, runner, report, limits
        self.planner = Planner()  # used by the planning thread only
        self.receiver = queue.concurrent_receiver()
        self.commit_ahead = self.receiver is None and not runner.ack_in_transaction
        self.taken = 0  # deliveries received so far (by one thread at a time)

    def run(self) -> None:
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-plan") as self.planning,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="events-commit") as self.committing,
        ):
            try:
                self._loop()
            finally:
                if self.receiver is not None:
                    self.receiver.close()
        if self.report.outage:
            log.warning("drain %s stopped: %s", self.report.drain_id, self.report.outage)

    def _loop(self) -> None:
        pending = self._fetch(first=True)
        while pending is not None:
            try:
                prepared = pending.result()
            except QueueError as exc:
                self.report.outage = f"queue unavailable: {exc}"
                break
            if prepared is None:
                break
            pending = self._apply(*prepared)

    def _take(self, queue: Queue, first: bool) -> list[Delivery]:
        want = min(self.limits.batch_size, self.limits.max_events - self.taken)
        if want <= 0:
            return []
        wait_s = self.limits.wait_s if first else 0.0
        deliveries = queue.receive_batch(want, self.limits.visibility_timeout_s, wait_s=wait_s)
        self.taken += len(deliveries)
        return deliveries

    def _prepare(self, deliveries: list[Delivery] | None, first: bool) -> Prepared | None:
        """In the planning thread: receive (when it has its own handle) and plan one batch."""
        if deliveries is None:
            assert self.receiver is not None
            deliveries = self._take(self.receiver, first)
            if not deliveries:
                return None
        try:
            plan: Plan | None = self.planner.plan(deliveries)
        except Exception:  # noqa: BLE001 - apply() plans again, and settles and reports the error
            plan = None
        return deliveries, plan

    def _fetch(self, first: bool) -> Future[Prepared | None] | None:
        """The next batch, being received and planned; None when there is none or the queue is down."""
        if self.receiver is not None:
            return self.planning.submit(self._prepare, None, first)
        try:
            deliveries = self._take(self.queue, first)
        except QueueError as exc:
            self.report.outage = f"queue unavailable: {exc}"
            return None
        return self.planning.submit(self._prepare, deliveries, first) if deliveries else None

    def _apply(self, deliveries: list[Delivery], plan: Plan | None) -> Future[Prepared | None] | None:
        """Apply one batch while the next is taken and planned; returns the next (None: the drain stops)."""
        report = self.report
        report.batches += 1
        batch_id = f"{report.drain_id}.{report.batches}"
        report.batch_ids.append(batch_id)
        committed = (
            self.committing.submit(self.runner.commit_ahead, deliveries, batch_id, plan)
            if self.commit_ahead
            else None
        )
        following = self._fetch(first=False)
        try:
            if committed is not None:
                result = self.runner.finish(committed, deliveries, batch_id)
            else:
                result = self.runner.apply(deliveries, batch_id, plan)
        except DrainStopped as stop:
            report.totals.add(stop.result)
            report.outage = str(stop)
            log.warning("drain %s stopped after %d batch(es): %s", report.drain_id, report.batches, stop)
            self._give_back(following)
            return None
        except BaseException:
            self._give_back(following)
            raise
        report.totals.add(result)
        if result.dead_lettered:
            report.dead_letters_moved += _move_dead_letters(self.queue)
        return following

    def _give_back(self, following: Future[Prepared | None] | None) -> None:
        """Give back a batch taken ahead that will not be applied (the drain stops)."""
        try:
            prepared = following.result() if following is not None else None
        except QueueError:
            return
        if prepared is not None:
            self.runner.give_back(prepared[0], self.report.totals)


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
    if queue.dead_letter_sink is None:  # a queue handed in: its dead letters go to the store all the same
        queue.dead_letter_sink = write_event_dead_letters
    engine = engine or get_engine(get_settings().warehouse_url)
    report = DrainReport(drain_id or new_drain_id(), queue.backend, BatchResult(drain_id or ""))
    report.totals.batch_id = report.drain_id
    runner = BatchRunner(
        queue,
        engine,
        transient_budget_s=transient_budget_s,
        ack_in_transaction=ack_in_transaction,
        after_commit=after_commit,
    )
    batches = _BatchLoop(queue, runner, report, _Limits(max_events, batch_size, wait_s, visibility_timeout_s))
    with correlation(drain_id=report.drain_id):  # on every log line of this drain (this thread)
        _run(queue, batches, report, close=own)
        log.info("drain %s: %s", report.drain_id, report.as_dict())
    return report


def _run(queue: Queue, batches: _BatchLoop, report: DrainReport, *, close: bool) -> None:
    """The drain proper, timed, between two looks at the queue; ``close``: the drain opened the queue."""
    t0 = time.perf_counter()
    try:
        report.depth_before, report.oldest_age_s_before = _queue_state(queue)
        batches.run()
        report.dead_letters_moved += _move_dead_letters(queue)
        report.depth_after, report.oldest_age_s_after = _queue_state(queue)
    finally:
        report.seconds = time.perf_counter() - t0
        if close:
            queue.close()
