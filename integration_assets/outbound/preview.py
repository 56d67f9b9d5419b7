"""A dry run of the outbox rows not relayed yet (``outbound run --dry-run``): each unsent row of a step is
handed to the step's dry run as if it were on its queue, so a won deal's order payload can be seen before
anything is relayed, called, written or acked.

The rows come through an in-memory queue that only reads: the outbox stays as it is (the relay still
publishes every row), and settling a delivery of it is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import sqlalchemy as sa

from integration_assets.outbound.relay import to_message
from integration_assets.outbound.runner import StepReport, run_step
from integration_assets.outbound.targets import Targets
from integration_assets.queue import Delivery, Message, Queue
from integration_assets.warehouse import outbox

_LIMIT = 10_000  # rows read per preview: a dry run is for looking, not for a whole backlog


class _UnsentRows(Queue):
    """The unsent outbox rows of one step as a queue that hands each row out once and settles nothing."""

    backend = "outbox"
    max_attempts = 1

    def __init__(self, step: str, messages: Sequence[Message]) -> None:
        self.name = f"outbox:{step}"
        self._waiting = list(messages)

    def publish_many(self, messages: Sequence[Message]) -> None:  # pragma: no cover - never published to
        raise NotImplementedError("the outbox preview only reads")

    def receive(
        self, max_messages: int = 100, visibility_timeout_s: float = 300.0, *, wait_s: float = 0.0
    ) -> list[Delivery]:
        taken, self._waiting = self._waiting[:max_messages], self._waiting[max_messages:]
        return [Delivery(m, redelivered=False, receipt=None) for m in taken]

    def ack(self, deliveries: Sequence[Delivery], *, connection: sa.Connection | None = None) -> None:
        return None

    def retry(self, delivery: Delivery, reason: str, delay_s: float | None = None) -> Literal["retried"]:
        return "retried"

    def release(self, deliveries: Sequence[Delivery], delay_s: float = 0.0) -> None:
        return None

    def dead_letter(self, delivery: Delivery, reason: str, check_name: str) -> None:
        return None

    def depth(self) -> int:
        return len(self._waiting)

    def oldest_age_seconds(self) -> float | None:
        return None

    def close(self) -> None:
        return None


def unsent_messages(engine: sa.Engine, step: str, *, limit: int = _LIMIT) -> list[Message]:
    """The queue messages the relay would publish for ``step``, in outbox order (read only)."""
    with engine.connect() as conn:
        rows = outbox.claim_unsent(conn, limit)
    return [to_message(r) for r in rows if r.step == step]


def preview_unsent(engine: sa.Engine, step: str, *, targets: Targets | None = None, **kw: Any) -> StepReport:
    """The step's dry run over its unsent outbox rows: ``previews`` holds each payload after its contract."""
    messages = unsent_messages(engine, step)
    if not messages:
        return StepReport(step)
    return run_step(
        engine,
        step,
        dry_run=True,
        targets=targets,
        queue=_UnsentRows(step, messages),
        max_messages=len(messages),
        **kw,
    )
