"""The one HTTP seam of the API connectors: default timeouts, one injectable transport, retries written once.

Every connector (``connectors/hubspot``, ``connectors/odoo``) builds an :class:`HttpClient` and sends all of its
calls through :meth:`HttpClient.request`, which:

- uses an ``httpx.Client`` with timeouts on by default (:data:`DEFAULT_TIMEOUT`) and no redirects; tests inject
  an ``httpx.MockTransport`` or point the client at a local fake server, never patch;
- records the status of **every** response (and ``None`` for a timeout or a dropped connection) through a
  recorder, by default :func:`warehouse_status_recorder`, i.e. ``connector_http_stats``, which the
  ``connector_http_error_alerts`` sensor reads; a retried request counts once per attempt, as the provider saw it;
- classifies each response as ok, retry (transient) or terminal. The default (:func:`classify_http`) retries
  429, 408 and 5xx; a connector adds what its wire format says (HubSpot's ``policyName``, Odoo's JSON-RPC
  ``error`` member that arrives with HTTP 200);
- retries with tenacity: capped exponential backoff with jitter, or the server's ``Retry-After`` (delay-seconds
  or an HTTP-date, RFC 9110 §10.2.3) when it sends one: never earlier, plus a little jitter so that
  clients told the same instant do not all come back at once. A request has at most ``max_attempts`` attempts,
  and a run at most ``RetryBudget.limit`` retries across all its requests (AWS Builders' Library, "Timeouts,
  retries and backoff with jitter": a budget keeps a storm from multiplying calls). A server asking for a
  longer wait than ``max_wait`` is not slept on: the request fails as transient and the next scheduled run
  tries again;
- raises :class:`~integration_assets.errors.TransientError` subclasses (:class:`RetriesExhausted`) or
  :class:`~integration_assets.errors.TerminalError` subclasses (:class:`RequestRejected`, :class:`QuotaExhausted`),
  never a bare httpx exception.

Secrets stay out of logs and messages: headers are never logged, log lines carry the method and path only,
and every message built here passes through :meth:`HttpClient.scrub` with the connector's secrets.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

import httpx
import sqlalchemy as sa
import tenacity

from integration_assets.errors import IntegrationError, TerminalError, TransientError

__all__ = [
    "DEFAULT_TIMEOUT",
    "HttpClient",
    "PagingStuck",
    "QuotaExhausted",
    "RequestRejected",
    "RetriesExhausted",
    "RetryBudget",
    "RetryPolicy",
    "Retryable",
    "StatusRecorder",
    "Throttle",
    "Verdict",
    "ascending_pages",
    "classify_http",
    "parse_retry_after",
    "warehouse_status_recorder",
]

log = logging.getLogger(__name__)

# Connect fails fast (a host that is down should not hold a run); a page may take a while to build on the
# provider side. Every phase has a limit, so nothing can hang a run forever.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=10.0)
USER_AGENT = "integration-assets/0.1 (+httpx)"

StatusRecorder = Callable[[int | None], None]
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
class RetryPolicy:
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


# --- recording ----------------------------------------------------------------------------------------------


def warehouse_status_recorder(system: str, engine: sa.Engine | None = None) -> StatusRecorder:
    """Record each response status of ``system`` in ``connector_http_stats`` (for the sustained-429/5xx alert).

    A warehouse that cannot take the count does not stop a pull (the pull does not need the warehouse); the
    first failure is logged as a warning, later ones at debug level.
    """
    from integration_assets.quality.connector_health import record_http_status

    warned = False

    def record(status: int | None) -> None:
        nonlocal warned
        try:
            record_http_status(system, status, engine=engine)
        except sa.exc.SQLAlchemyError as exc:
            log.log(
                logging.DEBUG if warned else logging.WARNING,
                "%s: could not record HTTP status %s for the connector health sensor (%s)",
                system,
                status,
                type(exc).__name__,
            )
            warned = True

    return record


# --- the client ---------------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    attempts: int = 0
    stop_reason: str = ""


class HttpClient:
    """One connector's HTTP client. Not thread-safe per instance; one per connector and run.

    ``sleep`` and ``clock`` (wall clock, epoch seconds: ``Retry-After`` dates are absolute) and ``rng`` are
    injectable so tests keep provider windows (HubSpot's 10 s) short or merely assert them.
    """

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        classify: Classifier = classify_http,
        recorder: StatusRecorder | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.system = system
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.budget = budget or RetryBudget()
        self.classify = classify
        self.recorder = recorder
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.secrets = secrets
        self.calls = 0  # attempts sent, including retries
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


# --- pagination ---------------------------------------------------------------------------------------------


class PagingStuck(ConnectorError, TerminalError):
    """More records share one version value than the provider lets a single query page through."""


def ascending_pages(
    fetch: Callable[[Any, str | None], tuple[list[dict[str, Any]], str | None]],
    *,
    start: Any,
    version: Callable[[dict[str, Any]], Any],
    ident: Callable[[dict[str, Any]], str],
    max_token: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every record of a query sorted ascending by ``version`` (a modified time), page by page.

    ``fetch(lower, token)`` returns one page of the records whose version is ``>= lower`` (all records when
    ``lower`` is None), ascending, starting at the provider's page token (None = the first page), and the token
    of the next page (None = this was the last).

    After each page the query restarts from the last version seen instead of following the token (keyset
    paging): the result never goes deep enough to hit a cap on a query's results (HubSpot search: 10,000) and
    a record that changes during the pull moves *ahead* of the reader instead of shifting offsets under it
    (with offsets, one unchanged record would be skipped per change). Records at exactly the restart value
    come back once more and are dropped by id. The provider's token is only followed through a run of more
    records with one equal version than fit in a page; past ``max_token`` that is :class:`PagingStuck`.
    """
    lower = start
    seen_at_lower: set[str] = set()
    token: str | None = None
    while True:
        records, next_token = fetch(lower, token)
        fresh = [
            r
            for r in records
            if not (lower is not None and version(r) == lower and ident(r) in seen_at_lower)
        ]
        if fresh:
            yield fresh
        if not records or next_token is None:
            return
        last = version(records[-1])
        if lower is None or last > lower:
            lower, token = last, None
            seen_at_lower = {ident(r) for r in records if version(r) == last}
        else:  # a whole page at the restart value: page through it in this query
            seen_at_lower.update(ident(r) for r in records)
            if max_token is not None and next_token.isdigit() and int(next_token) >= max_token:
                raise PagingStuck(
                    f"more than {max_token} records share the version {lower!r}; cannot page past it"
                )
            token = next_token
