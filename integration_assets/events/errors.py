"""Failures of event processing, each transient or terminal (``integration_assets/errors.py``)::

EventError
├── EventRejected        terminal: this event can never apply as it is (unparseable, unknown event type,
│                        fails its contract, object unknown): dead-letter it at once, with check and reason
├── WarehouseUnavailable transient: the warehouse cannot be reached; the batch goes back to the queue
│                        without spending an attempt (a transient outage never dead-letters an event)
├── BatchRefused         terminal for one (unknown) event of the batch: the warehouse refused a value or a
│                        constraint; the drain bisects the batch to find and dead-letter that event
└── WarehouseConfigError terminal for the whole drain: schema missing or not migrated; nothing is settled
"""

from __future__ import annotations

from integration_assets.errors import IntegrationError, TerminalError, TransientError


class EventError(IntegrationError):
    """Base of every event-processing failure."""


class EventRejected(EventError, TerminalError):
    """One event that cannot apply. ``check`` is the dead letter's check name, ``reason`` says why."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason


class WarehouseUnavailable(EventError, TransientError):
    """The warehouse is down, unreachable, or timed out (connection refused, killed, deadlock, locked)."""


class BatchRefused(EventError, TerminalError):
    """The warehouse refused the batch's writes (a value out of range, a constraint): some event in it is
    at fault, which one is not known yet."""


class WarehouseConfigError(EventError, TerminalError):
    """The warehouse schema is missing or not migrated (`integration-assets db upgrade`)."""
