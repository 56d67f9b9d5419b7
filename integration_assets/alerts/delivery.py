"""Handing one notice to one channel: retried on its own (tenacity, capped exponential backoff with jitter,
only for transient errors, honouring a receiver's Retry-After), and isolated, so a failing or crashing
channel never stops the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from integration_assets.alerts.notification import Channel, DeliveryError, Notification
from integration_assets.observability.redact import redact_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryRetry:
    """Per-channel retries within one call (AWS Builders' Library: capped exponential backoff + jitter).

    Few attempts on purpose: a sensor tick has a time budget, and a channel still failing after them is
    caught up on a later tick anyway.
    """

    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 4.0
    jitter: float = 0.5
    max_elapsed: float = 20.0


@dataclass(frozen=True)
class DeliveryResult:
    channel: str
    status: Literal["sent", "failed"]
    attempts: int
    error: str | None = None


class Deliverer:
    """Sends a notice to a channel with :class:`DeliveryRetry`; never raises."""

    def __init__(self, retry: DeliveryRetry) -> None:
        self.retry = retry
        self._backoff = wait_exponential_jitter(
            initial=retry.initial_wait, max=retry.max_wait, jitter=retry.jitter
        )

    def _wait(self, state: RetryCallState) -> float:
        delay = float(self._backoff(state))
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:  # honour a receiver's Retry-After (RFC 6585 §4), within our own cap
            delay = max(delay, min(float(retry_after), self.retry.max_wait))
        return delay

    def deliver(self, channel: Channel, notice: Notification) -> DeliveryResult:
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            channel.send(notice)

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts) | stop_after_delay(self.retry.max_elapsed),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.transient),
            reraise=True,
        )
        try:
            retrying(attempt)
        except DeliveryError as exc:
            error = f"{'transient' if exc.transient else 'terminal'}: {exc.detail}"
        except Exception as exc:  # noqa: BLE001 - bulkhead: a bug in one channel must not silence the others
            log.exception("alert channel %s crashed on %s", channel.name, notice.key)
            error = f"unexpected {type(exc).__name__}: {redact_text(str(exc))}"
        else:
            return DeliveryResult(channel.name, "sent", attempts)
        log.warning(
            "alert %s to %s failed after %d attempt(s): %s", notice.kind, channel.name, attempts, error
        )
        return DeliveryResult(channel.name, "failed", attempts, error)
