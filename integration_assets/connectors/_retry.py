"""What the connectors' HTTP client decides per response, and the limits its retries obey.

The errors every connector raises (always also ``TransientError`` or ``TerminalError``), the retry settings
of one request (:class:`HttpRetry`), the retry budget of a run, a per-second :class:`Throttle`, and the
classification of a response (:class:`Verdict`, :func:`classify_http`, ``Retry-After``). The client that
applies them is ``connectors/_http.py``.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

import httpx

from integration_assets.errors import IntegrationError, TerminalError, TransientError

Clock = Callable[[], float]
Sleep = Callable[[float], None]


# --- errors -------------------------------------------------------------------------------------------------


class ConnectorError(IntegrationError):
    """Base of the errors the connectors raise (always also Transient or Terminal)."""


class Retryable(ConnectorError, TransientError):
    """One attempt failed in a way worth retrying (429, 5xx, timeout, dropped connection)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        min_wait: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after  # what the server asked for (seconds from now), if anything
        self.min_wait = min_wait  # what the connector knows of the provider's window (HubSpot: 10 s)


class RetriesExhausted(ConnectorError, TransientError):
    """A request kept failing transiently until its attempts, the run's retry budget or ``max_wait`` ran out.

    Transient: nothing is wrong with the request itself; the next scheduled pull resumes from the cursor.
    """

    def __init__(self, message: str, *, attempts: int, last_status: int | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_status = last_status


class RequestRejected(ConnectorError, TerminalError):
    """The provider refused the request for a reason retrying will not fix (401, 403, 400, a bad domain …)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class QuotaExhausted(RequestRejected):
    """A quota that does not come back within the run (HubSpot DAILY): terminal until it resets.

    The client refuses every further call once it has seen one, so a run does not keep hammering the API.
    """


# --- policy -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRetry:
    """How one request is retried. Defaults suit a scheduled pull; tests shrink them."""

    max_attempts: int = 6
    backoff_base: float = 1.0  # first backoff (s) when the server gives no Retry-After
    backoff_cap: float = 60.0  # exponential backoff never waits longer than this
    # A Retry-After (or a provider window) longer than this is not slept on inside a run: fail as transient.
    max_wait: float = 300.0
    # Extra wait on top of a Retry-After: up to this fraction of it, at most retry_after_jitter_cap seconds.
    retry_after_jitter: float = 0.1
    retry_after_jitter_cap: float = 1.0


class RetryBudget:
    """Retries one run may spend across all of its requests (shared by the clients of one pull)."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def try_spend(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True


class Throttle:
    """At most one call per ``min_interval`` seconds (a documented per-second limit, e.g. HubSpot search)."""

    def __init__(
        self, min_interval: float, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        self.min_interval = min_interval
        self._clock, self._sleep = clock, sleep
        self._last: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._last is not None and (delay := self._last + self.min_interval - now) > 0:
            self._sleep(delay)
            now = self._clock()
        self._last = now


# --- classification -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What to do with one response."""

    action: Literal["ok", "retry", "terminal"]
    reason: str = ""
    retry_after: float | None = None
    min_wait: float = 0.0
    error: ConnectorError | None = None  # for "terminal": the error to raise (default: RequestRejected)
    block: bool = False  # "terminal" that also refuses every later call of this client (a spent quota)

    @classmethod
    def ok(cls) -> Verdict:
        return cls("ok")


Classifier = Callable[[httpx.Response, float], Verdict]

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from ``Retry-After`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), else None.

    ``now`` is the wall clock (epoch seconds), needed for the HTTP-date form. A date in the past means 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        seconds = float(value)  # not RFC, but some servers send "1.5"
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT ("-0000" parses as naive)
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def body_excerpt(response: httpx.Response, limit: int = 300) -> str:
    """The start of a response body for an error message (one line)."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    return " ".join(text[:limit].split())


def classify_http(response: httpx.Response, now: float) -> Verdict:
    """The default: 2xx/3xx ok; 408/425/429/5xx retry (honouring Retry-After); any other 4xx is terminal."""
    status = response.status_code
    if status < 400:
        return Verdict.ok()
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if status in RETRY_STATUSES or status >= 500:
        return Verdict("retry", reason=f"HTTP {status}", retry_after=retry_after)
    return Verdict("terminal", reason=f"HTTP {status}: {body_excerpt(response)}")
