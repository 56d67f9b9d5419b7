"""The one HTTP seam of the API connectors: default timeouts, one injectable transport, retries written once.

The reasoning: docs/DESIGN.md, "The HTTP seam of the API connectors (connectors/_http.py)".
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import httpx
import tenacity

from integration_assets.connectors._retry import (
    Classifier,
    Clock,
    ConnectorError,
    HttpRetry,
    RequestRejected,
    RetriesExhausted,
    Retryable,
    RetryBudget,
    Sleep,
    Throttle,
    classify_http,
)

if TYPE_CHECKING:
    from integration_assets.warehouse.api_budget import ApiBudget, Priority

log = logging.getLogger(__name__)

# Connect fails fast (a host that is down should not hold a run); a page may take a while to build on the
# provider side. Every phase has a limit, so nothing can hang a run forever.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=10.0)
USER_AGENT = "integration-assets/0.1 (+httpx)"

StatusRecorder = Callable[[int | None], None]


@dataclass
class _Outcome:
    attempts: int = 0
    stop_reason: str = ""


class HttpClient:
    """One connector's HTTP client. Not thread-safe per instance; one per connector and run.

    ``sleep`` and ``clock`` (wall clock, epoch seconds: ``Retry-After`` dates are absolute) and ``rng`` are
    injectable so tests keep provider windows (HubSpot's 10 s) short or merely assert them.

    ``api_budget`` (``warehouse/api_budget.py``, shared by every process) is asked before each attempt, with
    ``priority``, and told each answer's status and rate-limit headers; the seconds it made an attempt wait
    add up in :attr:`budget_wait_s`. A wait longer than ``retry.max_wait`` fails as transient.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: HttpRetry | None = None,
        budget: RetryBudget | None = None,
        classify: Classifier = classify_http,
        recorder: StatusRecorder | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        secrets: tuple[str, ...] = (),
        api_budget: ApiBudget | None = None,
        priority: Priority = "live",
    ) -> None:
        self.system = system
        self.base_url = base_url
        self.retry = retry or HttpRetry()
        self.budget = budget or RetryBudget()
        self.classify = classify
        self.recorder = recorder
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.secrets = secrets
        self.calls = 0  # attempts sent, including retries
        self.api_budget = api_budget
        self.priority: Priority = priority
        self.budget_wait_s = 0.0  # seconds the shared API budget made this client's attempts wait
        self._blocked: ConnectorError | None = None
        self._client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            event_hooks={"response": [self._on_response]},
        )

    def __repr__(self) -> str:  # never the headers: they hold the token
        return f"HttpClient(system={self.system!r}, base_url={self.base_url!r})"

    # context manager / lifecycle
    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def use_api_budget(self, budget: ApiBudget | None, priority: Priority = "live") -> None:
        """Ask ``budget`` before every later attempt (a client built elsewhere: a resource, the targets)."""
        self.api_budget, self.priority = budget, priority

    def scrub(self, text: str) -> str:
        """``text`` with every configured secret masked (messages may quote what a server echoed back)."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return text

    def _on_response(self, response: httpx.Response) -> None:
        self._record(response.status_code)

    def _record(self, status: int | None) -> None:
        if self.recorder is not None:
            self.recorder(status)

    # one attempt
    def _attempt(
        self, method: str, path: str, params: Any, json: Any, classify: Classifier, throttle: Throttle | None
    ) -> httpx.Response:
        if self._blocked is not None:
            raise self._blocked
        if throttle is not None:
            throttle.wait()
        if self.api_budget is not None:
            # Right before the send: the grant time is what the budget's rolling window counts.
            self.budget_wait_s += self.api_budget.acquire(self.priority, max_wait_s=self.retry.max_wait)
        self.calls += 1
        try:
            response = self._client.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            self._record(None)
            raise Retryable(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            self._record(None)
            raise Retryable(
                f"connection failed ({type(exc).__name__}: {self.scrub(str(exc))[:200]})"
            ) from exc
        if self.api_budget is not None:
            self.api_budget.observe(response.status_code, response.headers)
        verdict = classify(response, self.clock())
        if verdict.action == "ok":
            return response
        if verdict.action == "retry":
            raise Retryable(
                self.scrub(verdict.reason),
                status=response.status_code,
                retry_after=verdict.retry_after,
                min_wait=verdict.min_wait,
            )
        error = verdict.error or RequestRejected(
            self.scrub(f"{self.system} {method} {path}: {verdict.reason}"), status=response.status_code
        )
        if verdict.block:
            self._blocked = error
        raise error

    # tenacity hooks
    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, Retryable)
        p = self.retry
        floor = max(exc.min_wait, exc.retry_after or 0.0)
        if floor > 0:
            # Never earlier than asked; a little later, so clients told the same instant spread out.
            return floor + self.rng.uniform(0.0, min(p.retry_after_jitter * floor, p.retry_after_jitter_cap))
        backoff = min(p.backoff_cap, p.backoff_base * 2 ** (state.attempt_number - 1))
        return backoff / 2 + self.rng.uniform(0.0, backoff / 2)  # "equal jitter": at least half the backoff

    def _stop(self, outcome: _Outcome) -> Callable[[tenacity.RetryCallState], bool]:
        def stop(state: tenacity.RetryCallState) -> bool:
            outcome.attempts = state.attempt_number
            if state.attempt_number >= self.retry.max_attempts:
                outcome.stop_reason = f"{state.attempt_number} attempts"
                return True
            wait = state.upcoming_sleep
            if wait > self.retry.max_wait:
                outcome.stop_reason = (
                    f"asked to wait {wait:.0f} s, more than max_wait {self.retry.max_wait:.0f} s"
                )
                return True
            if not self.budget.try_spend():
                outcome.stop_reason = f"the run's retry budget of {self.budget.limit} is spent"
                return True
            return False

        return stop

    def _before_sleep(self, method: str, path: str) -> Callable[[tenacity.RetryCallState], None]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s %s %s: %s; retry %d/%d in %.2f s (budget left %d)",
                self.system,
                method,
                path,
                exc,
                state.attempt_number,
                self.retry.max_attempts - 1,
                state.upcoming_sleep,
                self.budget.remaining,
            )

        return before_sleep

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        classify: Classifier | None = None,
        throttle: Throttle | None = None,
    ) -> httpx.Response:
        """Send one request with retries; the response is a success as far as ``classify`` is concerned.

        Raises :class:`RetriesExhausted` (transient) or a terminal :class:`RequestRejected`.
        """
        outcome = _Outcome()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Retryable),
            wait=self._wait,
            stop=self._stop(outcome),
            sleep=self.sleep,
            before_sleep=self._before_sleep(method, path),
            reraise=False,
        )
        try:
            return retrying(self._attempt, method, path, params, json, classify or self.classify, throttle)
        except tenacity.RetryError as err:
            last = err.last_attempt.exception()
            status = last.status if isinstance(last, Retryable) else None
            raise RetriesExhausted(
                self.scrub(
                    f"{self.system} {method} {path}: gave up after {outcome.attempts} attempt(s) "
                    f"({outcome.stop_reason}); last error: {last}"
                ),
                attempts=outcome.attempts,
                last_status=status,
            ) from last


class HttpConnector:
    """A connector that owns one :class:`HttpClient`: a context manager that closes it."""

    http: HttpClient

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
