"""The publisher threads: the messages of concurrent requests are published in batches.

Requests do not publish themselves. A publisher thread owns its queue; it takes every request waiting
(lingering ``linger_s`` for more), publishes them as one batch (one transaction on SQL; on RabbitMQ all
messages sent, then all confirms awaited) and only then resolves each request's future. Under load the
batch grows by itself while the previous one is being confirmed. (Measured on RabbitMQ: ~355 µs of server
CPU per request this way, ~457 µs when each request published on the event loop through pika's
AsyncioConnection, whose confirms come back in smaller groups.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue as stdlib_queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.queue import Message, Queue, QueueError, QueueUnavailable, TransientQueueError

log = logging.getLogger(__name__)


class Overloaded(TransientQueueError):
    """Too many requests are waiting for the publisher: shed load with 503 rather than queue in memory."""


@dataclass(eq=False)
class _Job:
    provider: str
    messages: list[Message]
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    submitted: float


class Enqueuer:
    """Publisher threads that publish the messages of concurrent requests in batches.

    Each thread owns its own queue connection and takes the next batch from one shared inbox, so while one
    waits for the confirms (or the commit) of its batch, another publishes what arrived in the meantime.
    """

    def __init__(
        self,
        queue_factory: Callable[[], Queue],
        metrics: WebhookMetrics,
        *,
        max_batch: int = 500,
        linger_s: float = 0.001,
        max_pending: int = 10_000,
        keepalive_s: float = 1.0,
        threads: int = 1,
    ) -> None:
        self._factory = queue_factory
        self.threads = max(1, threads)
        self._metrics = metrics
        self.max_batch, self.linger_s, self.max_pending, self.keepalive_s = (
            max_batch,
            linger_s,
            max_pending,
            keepalive_s,
        )
        self._inbox: stdlib_queue.SimpleQueue[_Job | None] = stdlib_queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._writer_turn = threading.Lock()  # for queues that take one writer at a time (SQLite)
        self._stopped = False
        # Outcome of each publisher thread's last publish: the receiver is only "ok" when all of them are.
        self._outcomes: dict[str, str | None] = {}  # thread name -> None (ok) or the error

    @property
    def state(self) -> str:
        """idle | ok | unavailable | stopped (unavailable while any publisher thread's last publish failed)."""
        if self._stopped:
            return "stopped"
        outcomes = list(self._outcomes.values())
        if not outcomes:
            return "idle"
        return "unavailable" if any(o is not None for o in outcomes) else "ok"

    @property
    def last_error(self) -> str | None:
        return next((o for o in list(self._outcomes.values()) if o is not None), None)

    @property
    def running(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def start(self) -> None:
        with self._start_lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"webhook-publisher-{i}", daemon=True)
                    for i in range(self.threads)
                ]
                for t in self._threads:
                    t.start()

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self, timeout_s: float = 30.0) -> None:
        """Publish what is already waiting, then close the queue."""
        if not self._threads:
            return
        for _ in self._threads:
            self._inbox.put(None)  # one stop mark per thread; each takes exactly one and ends
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._stopped = True
        leftovers: list[_Job] = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except stdlib_queue.Empty:
                break
            if job is not None:
                leftovers.append(job)
        if leftovers:
            self._settle_all(leftovers, QueueUnavailable("receiver shutting down"))

    async def enqueue(self, provider: str, messages: list[Message], timeout_s: float) -> None:
        """Return once every message is durably stored; raise a ``QueueError`` otherwise."""
        if self.state == "stopped":
            raise QueueUnavailable("receiver shutting down")
        self.start()
        if not self.running:  # never expected (the thread catches everything), but never wait on a dead one
            raise QueueUnavailable("publisher thread is not running")
        if self._inbox.qsize() >= self.max_pending:
            raise Overloaded(f"{self.max_pending} requests already wait for the publisher")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._inbox.put(_Job(provider, messages, future, loop, time.perf_counter()))
        try:
            async with asyncio.timeout(timeout_s):  # no wrapper task per request, unlike wait_for
                await future
        except TimeoutError as exc:
            raise QueueUnavailable(f"not confirmed within {timeout_s}s") from exc

    def _run(self) -> None:
        slot: list[Queue] = []  # this thread's queue, opened on first use
        stopping = False
        while not stopping:
            try:
                first = self._inbox.get(timeout=self.keepalive_s)
            except stdlib_queue.Empty:
                if slot:
                    slot[0].keepalive()
                continue
            if first is None:
                break
            jobs, size = [first], len(first.messages)
            deadline = time.monotonic() + self.linger_s
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = self._inbox.get(timeout=remaining) if remaining > 0 else self._inbox.get_nowait()
                except stdlib_queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                size += len(job.messages)
            self._publish(jobs, slot)
        if slot:
            slot[0].close()

    def _publish(self, jobs: Sequence[_Job], slot: list[Queue]) -> None:
        messages = [m for job in jobs for m in job.messages]
        self._metrics.batch_size.observe(len(messages))
        error: QueueError | None = None
        try:
            if not slot:
                slot.append(self._factory())
            queue = slot[0]
            with contextlib.nullcontext() if queue.concurrent_writers else self._writer_turn:
                queue.publish_many(messages)
                outcome = queue.last_publish
            for source in outcome.duplicates:
                self._metrics.key_duplicates.labels(source).inc()
            for source in outcome.collisions:
                self._metrics.key_collisions.labels(source).inc()
        except QueueError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - the thread must survive anything; the requests get 503
            log.exception("publish of %d message(s) failed unexpectedly", len(messages))
            error = QueueUnavailable(f"publish failed: {type(exc).__name__}")
        if error is None:
            self._outcomes[threading.current_thread().name] = None
        else:
            reason = f"{type(error).__name__}: {error}"
            self._outcomes[threading.current_thread().name] = reason
            self._metrics.publish_failures.labels(type(error).__name__).inc()
            log.warning("publish of %d message(s) failed: %s", len(messages), reason)
        self._settle_all(jobs, error)

    def _settle_all(self, jobs: Sequence[_Job], error: QueueError | None) -> None:
        failed_ids = set(error.message_ids) if error is not None else set()
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, QueueError | None]]] = defaultdict(list)
        for job in jobs:
            # When the backend names the failed messages (a nack, a return), the other requests succeeded.
            failed = error is not None and (not failed_ids or any(m.id in failed_ids for m in job.messages))
            by_loop[job.loop].append((job, error if failed else None))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, items)
            except RuntimeError:
                log.debug("event loop closed; %d request(s) gone", len(items))

    def _settle(self, items: Sequence[tuple[_Job, QueueError | None]]) -> None:
        now = time.perf_counter()
        for job, error in items:
            if job.future.done():  # timed out or the client went away
                continue
            if error is None:
                self._metrics.enqueue_seconds.labels(job.provider).observe(now - job.submitted)
                job.future.set_result(None)
            else:
                job.future.set_exception(error)
