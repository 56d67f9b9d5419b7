"""Stripe API v1, read side: the events of a ``created`` window, and the object lists for older ranges
(docs/SOURCES.md §3.2 and "Stripe API (pull)").

- ``GET /v1/events?created[gte]=<start>&created[lt]=<end>&limit=100[&starting_after=<last id>]``: a list
  envelope ``{"object": "list", "data": [...], "has_more": bool, "url": "/v1/events"}``, newest first; the
  next page starts after the last id of this one while ``has_more``. Stripe keeps events 30 days: a window
  that starts earlier is answered with what is left (:attr:`StripeClient.events_complete` says whether the
  whole window is still inside the retention).
- ``GET /v1/payment_intents|charges|refunds`` with the same ``created`` filter and paging: the objects
  *created* in the window, in their current state (no intermediate events).

The window is half-open, ``[start, end)`` in whole epoch seconds, so a record created exactly at a partition
boundary belongs to the later partition only. A record the API returns outside the window is dropped and
counted (:attr:`StripeClient.outside_window`); an id already seen in this listing is skipped (a page boundary
that moved).

Auth ``Authorization: Bearer <STRIPE_API_KEY>``; the key is masked in every message. Transient failures (429,
5xx, ``Stripe-Should-Retry: true``, timeouts) are retried inside through the shared HTTP seam
(``connectors/_http.py``), which also asks the shared API budget (``warehouse/api_budget.py``) before each
attempt when one is given; when the attempts are spent :class:`RetriesExhausted` (transient) escapes.
401/403 are :class:`StripeAuthError`, other 4xx :class:`StripeRejected` (permanent).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import httpx

from integration_assets.connectors._http import DEFAULT_TIMEOUT, HttpClient, HttpConnector, StatusRecorder
from integration_assets.connectors._retry import HttpRetry, RetriesExhausted, RetryBudget
from integration_assets.connectors.stripe.errors import (
    StripeAuthError,
    StripeRejected,
    classify_stripe,
    json_body,
)

if TYPE_CHECKING:
    from integration_assets.warehouse.api_budget import ApiBudget, Priority

__all__ = [
    "DEFAULT_BASE_URL",
    "EVENT_RETENTION",
    "OBJECT_LISTS",
    "RetriesExhausted",
    "StripeClient",
    "Window",
]

SYSTEM = "stripe"
DEFAULT_BASE_URL = "https://api.stripe.com"
PAGE_LIMIT = 100  # the list endpoints' maximum (docs/SOURCES.md §3.2)
# "List events, going back up to 30 days" (docs/SOURCES.md §3.1, §3.2).
EVENT_RETENTION = timedelta(days=30)
ObjectList = Literal["payment_intents", "charges", "refunds"]
OBJECT_LISTS: tuple[ObjectList, ...] = ("payment_intents", "charges", "refunds")
# A pull run is bounded: a few retries with Stripe's own backoff shape, then the run fails as transient.
DEFAULT_RETRY = HttpRetry(max_attempts=5, backoff_base=0.5, backoff_cap=8.0, max_wait=120.0)


@dataclass(frozen=True)
class Window:
    """A half-open ``created`` window ``[start, end)`` (aware datetimes, whole seconds)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a Stripe window needs timezone-aware bounds")
        if self.end <= self.start:
            raise ValueError(f"empty Stripe window: {self.start.isoformat()} .. {self.end.isoformat()}")

    @property
    def gte(self) -> int:
        return int(self.start.timestamp())

    @property
    def lt(self) -> int:
        return int(self.end.timestamp())

    def params(self) -> dict[str, str]:
        return {"created[gte]": str(self.gte), "created[lt]": str(self.lt)}

    def holds(self, created: Any) -> bool:
        return isinstance(created, int) and not isinstance(created, bool) and self.gte <= created < self.lt

    @classmethod
    def day(cls, day: str | datetime) -> Window:
        """The UTC day ``YYYY-MM-DD`` (a daily partition key) as a window."""
        start = (
            datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
            if isinstance(day, str)
            else day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        )
        return cls(start, start + timedelta(days=1))


class StripeClient(HttpConnector):
    """The Stripe read connector (one per run; close it, or use ``with``)."""

    system = SYSTEM

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: HttpClient | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: HttpRetry | None = None,
        budget: RetryBudget | None = None,
        status_recorder: StatusRecorder | None = None,
        api_budget: ApiBudget | None = None,
        priority: Priority = "live",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """``http``: a ready seam (it must send the key); otherwise one is built from the other arguments.
        ``api_budget``: the shared budget of the Stripe API, asked before each attempt with ``priority``."""
        if not api_key and http is None:
            raise StripeAuthError("no Stripe API key: set STRIPE_API_KEY (sk_… or a restricted rk_… key)")
        self.clock = clock
        root = base_url.rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.http = http or HttpClient(
            SYSTEM,
            root,
            headers={"Authorization": f"Bearer {api_key}"},
            transport=transport,
            timeout=timeout,
            retry=retry or DEFAULT_RETRY,
            budget=budget,
            classify=functools.partial(classify_stripe, secrets=(api_key,)),
            recorder=status_recorder,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter
            secrets=(api_key,),
            api_budget=api_budget,
            priority=priority,
        )
        if api_budget is not None and http is not None:
            self.http.use_api_budget(api_budget, priority)
        if api_key and api_key not in self.http.secrets:
            self.http.secrets = (*self.http.secrets, api_key)
        self.outside_window = 0  # records the API returned outside the requested window (dropped)
        self.pages = 0

    @classmethod
    def from_settings(cls, **kw: Any) -> StripeClient:
        """A client from STRIPE_BASE_URL and STRIPE_API_KEY; ``kw`` as for the constructor."""
        from integration_assets.settings import get_settings

        s = get_settings()
        return cls(kw.pop("base_url", s.stripe_base_url), kw.pop("api_key", s.stripe_api_key or ""), **kw)

    def __repr__(self) -> str:  # never the key
        return f"StripeClient(base_url={self.http.base_url!r})"

    # -- windows ----------------------------------------------------------------------------------------------
    def events_complete(self, window: Window, *, margin: timedelta = timedelta(hours=1)) -> bool:
        """Whether Stripe still keeps every event of ``window`` (its start is inside the 30 days, with
        ``margin`` for the time the pull takes and for clock skew)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        return window.start >= now - EVENT_RETENTION + margin

    def events(self, window: Window, *, types: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
        """The events created in ``window`` (newest first, as Stripe lists them); ``types``: up to 20 event
        types (``types[]``), all when empty."""
        if len(types) > 20:
            raise ValueError("Stripe accepts at most 20 types[] per event list")
        params: dict[str, Any] = window.params()
        if types:
            params["types[]"] = list(types)
        yield from self._list("/v1/events", params, window, "event")

    def objects(self, kind: ObjectList, window: Window) -> Iterator[dict[str, Any]]:
        """The PaymentIntents, charges or refunds *created* in ``window``, in their current state."""
        if kind not in OBJECT_LISTS:
            raise ValueError(f"not a Stripe object list: {kind!r} (known: {', '.join(OBJECT_LISTS)})")
        yield from self._list(f"/v1/{kind}", window.params(), window, kind.rstrip("s"))

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _list(self, path: str, params: dict[str, Any], window: Window, what: str) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        after: str | None = None
        while True:
            query = {**params, "limit": str(PAGE_LIMIT)}
            if after is not None:
                query["starting_after"] = after
            response = self.http.request("GET", path, params=query)
            self.pages += 1
            page = json_body(response)
            data = page.get("data")
            if page.get("object") != "list" or not isinstance(data, list):
                raise StripeRejected(
                    f"Stripe GET {path}: the answer (HTTP {response.status_code}) is not a list object",
                    status=response.status_code,
                )
            last: str | None = None
            for record in data:
                if not isinstance(record, dict) or not isinstance(record.get("id"), str):
                    raise StripeRejected(f"Stripe GET {path}: a {what} without an id", status=200)
                last = record["id"]
                if last in seen:
                    continue
                seen.add(last)
                if not window.holds(record.get("created")):
                    self.outside_window += 1
                    continue
                yield record
            if not page.get("has_more") or last is None or last == after:
                return
            after = last
