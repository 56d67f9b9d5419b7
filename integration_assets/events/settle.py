"""Settle a batch's deliveries on the queue, once its effect is committed.

- **In the transaction** (a queue that ``supports_transactional_ack``: the SQL queue living in the
  warehouse): the rejected events' dead letters are written (``dead_letters.store``) and the deliveries acked
  inside the batch's transaction, so effect, ledger row and ack commit
  together: exactly once on that backend, no window at all.
- **After the commit** (RabbitMQ, or a queue table in another database): the deliveries are acked and the
  rejected ones dead-lettered. A crash between COMMIT and ack makes the broker redeliver: every id is then in
  the ledger, so the redelivery is counted as duplicates and changes nothing. An ack that fails is counted
  (``ack_failed``); a dead letter that fails leaves the event to come back (``retried``).
- **Given back**: ``release`` (the warehouse is down: no attempt spent), ``retry`` (a bug: an attempt spent,
  so a crash loop ends in the dead letters), ``dead_letter`` one event the warehouse refused.

The file phase of the batch's GDPR erasures runs here too, after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.erasure.erase import finish_pending
from integration_assets.events.apply import Committed, InTransaction
from integration_assets.events.extract import Plan
from integration_assets.events.results import BatchResult
from integration_assets.queue import Delivery, Queue, QueueDeadLetter, QueueError, StaleDelivery

log = logging.getLogger(__name__)


def in_transaction(queue: Queue, batch_id: str) -> InTransaction:
    """Settles a batch inside its transaction: the rejected events' dead letters written (``dead_letters.store``)
    and the deliveries acked in the same transaction (``queue.supports_transactional_ack`` must hold)."""
    details = {"queue": queue.name, "backend": queue.backend, "batch_id": batch_id}

    def settle(conn: sa.Connection, plan: Plan) -> None:
        write_event_dead_letters(
            conn,
            [
                QueueDeadLetter.of(
                    r.delivery.message, r.reason, r.check, max(1, r.delivery.attempts), details
                )
                for r in plan.rejections
            ],
        )
        queue.ack(plan.settled() + [r.delivery for r in plan.rejections], connection=conn)

    return settle


class Settler:
    """Settles committed batches on ``queue`` and finishes the erasures they started (``engine``: the
    warehouse)."""

    def __init__(self, queue: Queue, engine: sa.Engine) -> None:
        self.queue, self.engine = queue, engine
        self._erasures_resumed = False  # erasures a crash left half done are finished after the first batch

    def settle(
        self, committed: Committed, after_commit: Callable[[BatchResult], None] | None = None
    ) -> BatchResult:
        """After the commit: ack the batch (unless it was acked in the transaction) and dead-letter what was
        rejected. ``after_commit`` runs first (tests crash there)."""
        plan, result = committed.plan, committed.result
        if after_commit is not None:
            after_commit(result)
        if not result.acked_in_transaction:
            self._after_commit(plan, result)
        if plan.erased or not self._erasures_resumed:
            self._erasures_resumed = True
            self._finish_erasures(plan, result)
        return result

    def _after_commit(self, plan: Plan, result: BatchResult) -> None:
        settled = plan.settled()
        try:
            self.queue.ack(settled)
        except QueueError as exc:
            # The effect is committed; the messages come back and are then duplicates in the ledger.
            result.ack_failed += len(settled)
            log.warning(
                "batch %s: ack of %d delivery(ies) failed after commit: %s",
                result.batch_id,
                len(settled),
                exc,
            )
        for r in plan.rejections:
            try:
                self.queue.dead_letter(r.delivery, r.reason, r.check)
            except StaleDelivery:
                log.info(
                    "batch %s: %s was settled elsewhere; not dead-lettered here",
                    result.batch_id,
                    r.delivery.message.id,
                    extra={"event_id": r.delivery.message.id},
                )
            except QueueError as exc:
                # Still unsettled: it is delivered again and rejected again.
                result.dead_lettered -= 1
                result.retried += 1
                log.warning(
                    "batch %s: dead-lettering %s failed: %s",
                    result.batch_id,
                    r.delivery.message.id,
                    exc,
                    extra={"event_id": r.delivery.message.id},
                )

    def _finish_erasures(self, plan: Plan, result: BatchResult) -> None:
        """The file phase of the batch's erasures, and of any a crash left unfinished (one small query when
        there are none). A failure leaves them ``warehouse_done`` for the next batch that erases, the next
        drain, or ``integration-assets privacy resume``."""
        try:
            finish_pending(self.engine, known={e.id: e for e in plan.erased if e.id is not None})
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            log.warning(
                "batch %s: erasure files not finished (%s); they stay pending: %s",
                result.batch_id,
                ", ".join(str(e.id) for e in plan.erased),
                type(exc).__name__,
            )

    def refused(self, delivery: Delivery, reason: str, batch_id: str) -> BatchResult:
        """One event the warehouse refused on its own: dead-lettered (check ``load_error``)."""
        result = BatchResult(batch_id, events_in=1, dead_lettered=1)
        result.reasons["load_error"] += 1
        try:
            self.queue.dead_letter(delivery, reason, "load_error")
        except StaleDelivery:
            pass
        except QueueError as qexc:
            log.warning(
                "dead-lettering %s failed: %s",
                delivery.message.id,
                qexc,
                extra={"event_id": delivery.message.id},
            )
            result.dead_lettered, result.retried = 0, 1
        return result

    def release(self, deliveries: Sequence[Delivery], delay_s: float) -> None:
        """Give deliveries back without spending attempts (the failure was not theirs)."""
        try:
            self.queue.release(deliveries, delay_s)
        except QueueError as exc:
            # The queue is down too (the SQL queue lives in the warehouse): the claims lapse after the
            # visibility timeout and the messages come back by themselves.
            log.warning("could not release %d delivery(ies): %s", len(deliveries), exc)

    def retry(self, deliveries: Sequence[Delivery], reason: str) -> None:
        """Give deliveries back spending an attempt each (a bug: a crash loop ends in the dead letters)."""
        for d in deliveries:
            try:
                self.queue.retry(d, reason)
            except QueueError as exc:
                log.warning("could not retry %s: %s", d.message.id, exc, extra={"event_id": d.message.id})
