"""The two kinds of failure every layer distinguishes.

Transient: the same work may succeed later (a system is down, a timeout, a 429): retry with backoff, never
dead-letter. Terminal: the input itself is wrong (a bad row, an unparseable file): quarantine it at once.
Each package raises subclasses of these, so callers decide by kind, not by catching everything.
"""

from __future__ import annotations


class IntegrationError(Exception):
    """Base of every error this project raises on purpose."""


class TransientError(IntegrationError):
    """Retrying the same work later may succeed."""


class TerminalError(IntegrationError):
    """Retrying the same input will fail the same way."""
