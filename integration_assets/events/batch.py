"""One batch, whatever happens: plan → commit (``events.apply``) → settle (``events.settle``), with the
drain's failure handling (see ``events.drain``): transient failures retried in place then given back without
spending attempts, a refused batch bisected down to the event at fault, a bug settled through ``retry``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import sqlalchemy as sa

from integration_assets.events.apply import Applier, Committed
from integration_assets.events.errors import (
    BatchRefused,
    EventError,
    WarehouseConfigError,
    WarehouseUnavailable,
)
from integration_assets.events.extract import Plan
from integration_assets.events.results import BatchResult
from integration_assets.events.settle import Settler, in_transaction
from integration_assets.queue import Delivery, Queue, backoff_delay

log = logging.getLogger(__name__)


class DrainStopped(EventError):
    """The drain cannot go on (warehouse down past the budget); carries what the last batch did."""

    def __init__(self, reason: str, result: BatchResult) -> None:
        super().__init__(reason)
        self.result = result


def _sleep(queue: Queue, seconds: float) -> None:
    """Wait without letting the broker connection die (a dropped connection would redeliver the batch
    and count an attempt against every message in it)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        queue.keepalive()


class BatchRunner:
    """Applies batches from ``queue`` to ``engine``. ``ack_in_transaction`` (default: when the queue is the SQL
    queue of this warehouse) settles the queue in the effect's transaction; ``after_commit`` runs between
    COMMIT and the ack (tests crash there)."""

    def __init__(
        self,
        queue: Queue,
        engine: sa.Engine,
        *,
        transient_budget_s: float = 60.0,
        ack_in_transaction: bool | None = None,
        after_commit: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.queue = queue
        self.applier = Applier(engine)
        self.settler = Settler(queue, engine)
        self.transient_budget_s = transient_budget_s
        self.ack_in_transaction = (
            queue.supports_transactional_ack(engine) if ack_in_transaction is None else ack_in_transaction
        )
        self.after_commit = after_commit

    def process(self, deliveries: Sequence[Delivery], batch_id: str, plan: Plan | None = None) -> BatchResult:
        """Commit one batch and settle it, once (no failure handling)."""
        settle_in = in_transaction(self.queue, batch_id) if self.ack_in_transaction else None
        committed = self.applier.commit(deliveries, batch_id, plan=plan, in_transaction=settle_in)
        return self.settler.settle(committed, self.after_commit)

    def apply(self, deliveries: Sequence[Delivery], batch_id: str, plan: Plan | None = None) -> BatchResult:
        """Apply one batch (``plan``: made ahead by the planner thread); raises ``DrainStopped`` when the
        warehouse stayed unavailable past the budget."""
        deadline = time.monotonic() + self.transient_budget_s
        attempt = 0
        while True:
            try:
                return self.process(deliveries, batch_id, plan)
            except WarehouseUnavailable as exc:
                plan = None  # a failed transaction leaves the plan marked up: plan again
                attempt += 1
                delay = backoff_delay(attempt, base_s=0.5, cap_s=10.0)
                if time.monotonic() + delay > deadline:
                    self.settler.release(deliveries, backoff_delay(attempt, base_s=5.0, cap_s=60.0))
                    raise DrainStopped(
                        str(exc), BatchResult(batch_id, events_in=len(deliveries), retried=len(deliveries))
                    ) from exc
                log.warning("batch %s: %s; retrying in %.1fs (attempt %d)", batch_id, exc, delay, attempt)
                _sleep(self.queue, delay)
            except WarehouseConfigError:
                self.settler.release(deliveries, 0.0)
                raise
            except BatchRefused as exc:
                return self._isolate(deliveries, batch_id, exc)
            except Exception as exc:  # noqa: BLE001 - a bug: settle through retry (attempts), then re-raise
                self.settler.retry(deliveries, f"{type(exc).__name__}: {exc}")
                raise

    def commit_ahead(self, deliveries: Sequence[Delivery], batch_id: str, plan: Plan | None) -> Committed:
        """The batch's transaction alone, without touching the queue (run in the commit thread while the
        drain's thread receives the next batch); ``finish`` settles it."""
        return self.applier.commit(deliveries, batch_id, plan=plan)

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
        return self.settler.settle(committed, self.after_commit)

    def _isolate(self, deliveries: Sequence[Delivery], batch_id: str, exc: BatchRefused) -> BatchResult:
        if len(deliveries) == 1:
            return self.settler.refused(deliveries[0], f"the warehouse refused the event: {exc}", batch_id)
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
        self.settler.release(deliveries, 0.0)
        totals.events_in += len(deliveries)
        totals.retried += len(deliveries)
