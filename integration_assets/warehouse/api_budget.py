"""One request budget per external API and account, shared by every run and process (issue 13).

Dagster pools count runs, not requests: a 30-day backfill beside the live schedule could spend HubSpot's
burst limit and make the live pull fail too. So the budget lives in the warehouse (table ``api_budget``, this
module its only writer), and every HTTP attempt of a connector asks it first (``connectors/_http.py``).

The window is **rolling**, like HubSpot's ``TEN_SECONDLY_ROLLING``: the row keeps the grant time of every
token of the last ``window`` (+ a small margin for the time between the grant and the provider receiving the
request), and a token is granted only while fewer than ``per_window`` are in it. A fixed window would allow
twice the limit across a boundary, which a rolling limit answers with 429s; a token bucket that never
exceeds a rolling limit gives away half of it. The wait is computed, not polled: the moment the oldest
token of the window expires.

Priorities: ``live`` and ``outbound`` before ``backfill``. A backfill may use what live, outbound (and
foreign, see below) requests leave of the window minus a small reserve (2 %, at least one request, so a
live pull that arrives is served at once), and never less than ``backfill_share``. While a live request has
to wait, the backfill is held to ``backfill_share`` and every token that frees goes to live: a live pull
never waits more than one window. (A fixed share would leave half of an idle API unused: the backfill of the
benchmark would reach 50 % of the limit instead of ~95 %.) The daily limit (``daily``) counts per UTC day; a
backfill may spend at most ``backfill_share`` of it.

What the provider says overrides what we counted (:meth:`ApiBudget.observe`): a 429 pauses the API for every
process until its ``Retry-After`` (else HubSpot's ``X-HubSpot-RateLimit-Interval-Milliseconds``, else one
window); ``X-HubSpot-RateLimit-Remaining`` lower than our own count (someone else uses the account) fills the
window with that many placeholder grants; ``X-HubSpot-RateLimit-Daily-Remaining: 0`` pauses until the next
UTC midnight. Most responses need no write: the process compares the headers with what it saw at its own
last grant and only then opens a transaction.

Cost: one short transaction per acquire (Postgres ``SELECT … FOR UPDATE`` + ``UPDATE`` of one row; SQLite
``BEGIN IMMEDIATE``). Figures in docs/BENCHMARKS.md, "Issue 13: shared API budget".
"""

from __future__ import annotations

import bisect
import email.utils
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from integration_assets.errors import TransientError
from integration_assets.policies import ApiBudgetPolicy, PolicyError, load_policies
from integration_assets.warehouse.db import begin_write
from integration_assets.warehouse.schema import api_budget as table

__all__ = [
    "ApiBudget",
    "BudgetExceeded",
    "BudgetStats",
    "BudgetTotals",
    "Priority",
    "api_budget_for",
    "priority_from_tags",
    "totals",
]

Priority = Literal["live", "outbound", "backfill"]
PRIORITIES: tuple[Priority, ...] = ("live", "outbound", "backfill")
Clock = Callable[[], float]
Sleep = Callable[[float], None]

# An idle window is lent to a backfill except this share (at least one request): a live pull that arrives
# then gets its first requests at once instead of waiting for the oldest backfill grant to expire.
LIVE_RESERVE = 0.02
# The tag a run carries when it is part of a backfill (Dagster sets it), and the project's own override.
BACKFILL_TAG = "dagster/backfill"
PRIORITY_TAG = "integration/priority"

_BACKFILL, _FOREIGN = "b", "p"  # grant kinds in the row's text: backfill, a placeholder for foreign use


class BudgetExceeded(TransientError):
    """The next request may only go later than the caller is willing to wait (``max_wait_s``)."""

    def __init__(self, message: str, *, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


@dataclass
class BudgetStats:
    """What one :class:`ApiBudget` (one process, one run) asked and got: for run metadata and logs."""

    api: str
    requests: int = 0  # tokens granted
    waits: int = 0  # acquires that had to wait
    wait_s: float = 0.0  # seconds waited in total
    longest_wait_s: float = 0.0
    throttled: int = 0  # 429 answers observed

    def as_metadata(self) -> dict[str, float | int]:
        return {
            f"{self.api}_api_requests": self.requests,
            f"{self.api}_api_budget_waits": self.waits,
            f"{self.api}_api_budget_wait_s": round(self.wait_s, 3),
            f"{self.api}_api_budget_longest_wait_s": round(self.longest_wait_s, 3),
            f"{self.api}_api_429": self.throttled,
        }


@dataclass(frozen=True)
class BudgetTotals:
    """The running totals of one API and account, over every process (the table's counters)."""

    api: str
    account: str
    requests: int
    waits: int
    wait_s: float
    throttled: int


@dataclass
class _State:
    """One row, parsed. ``grants``: (epoch ms, kind) sorted by time; kind "" live/outbound, "b", "p"."""

    grants: list[tuple[int, str]] = field(default_factory=list)
    paused_until: float | None = None
    live_until: float | None = None  # a live or outbound request waits until then
    day: str | None = None
    day_used: int = 0
    day_backfill: int = 0

    @classmethod
    def from_row(cls, row: sa.Row) -> _State:
        grants: list[tuple[int, str]] = []
        for item in (row.grants or "").split():
            kind = item[-1] if item[-1] in (_BACKFILL, _FOREIGN) else ""
            grants.append((int(item[:-1] if kind else item), kind))
        return cls(
            grants, row.paused_until, row.live_until, row.day, int(row.day_used), int(row.day_backfill)
        )

    def text(self) -> str:
        return " ".join(f"{t}{k}" for t, k in self.grants)

    def prune(self, now_ms: int, window_ms: int) -> None:
        cutoff = now_ms - window_ms
        start = bisect.bisect_right(self.grants, (cutoff, "~"))  # "~" sorts after every kind
        del self.grants[:start]

    def roll_day(self, today: str) -> None:
        if self.day != today:
            self.day, self.day_used, self.day_backfill = today, 0, 0


def _utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def _next_midnight(now: float) -> float:
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (day + timedelta(days=1)).timestamp()


def _retry_after_s(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        return None


def _lower(headers: Mapping[str, str]) -> Mapping[str, str]:
    # httpx.Headers is case-insensitive already; a plain dict (tests, other clients) is made so.
    if hasattr(headers, "get_list"):
        return headers
    return {str(k).lower(): v for k, v in headers.items()}


def priority_from_tags(tags: Mapping[str, str]) -> Priority:
    """A run's priority: ``integration/priority`` when set, else ``backfill`` for a run of a backfill
    (Dagster's ``dagster/backfill`` tag), else ``live``."""
    explicit = tags.get(PRIORITY_TAG)
    if explicit in PRIORITIES:
        return explicit  # type: ignore[return-value]
    return "backfill" if BACKFILL_TAG in tags else "live"


class ApiBudget:
    """The budget of one API and account. Thread-safe; one per client is fine, several share the same row.

    ``clock`` is the wall clock (epoch seconds: the processes compare times through the database, and the
    daily limit resets at UTC midnight); ``clock`` and ``sleep`` are injectable so tests need not wait out
    10 s windows. ``margin_s`` widens the window we count over the provider's (default 1 % + 50 ms).
    """

    def __init__(
        self,
        engine: sa.Engine,
        api: str,
        account: str = "default",
        *,
        policy: ApiBudgetPolicy | None = None,
        clock: Clock = time.time,
        sleep: Sleep = time.sleep,
        margin_s: float | None = None,
    ) -> None:
        if policy is None:
            budgets = load_policies().api_budget
            if api not in budgets:
                raise PolicyError(
                    f"policies.yaml api_budget has no entry for {api!r} (has: {sorted(budgets)})"
                )
            policy = budgets[api]
        self.engine, self.api, self.account, self.policy = engine, api, account, policy
        self.clock, self.sleep = clock, sleep
        window_s = policy.window.total_seconds()
        self.margin_s = min(0.5, 0.05 + 0.01 * window_s) if margin_s is None else margin_s
        self.window_s = window_s + self.margin_s
        self.window_ms = int(round(self.window_s * 1000))
        n = policy.per_window
        self.backfill_cap = policy.backfill_per_window
        self.reserve = max(1, math.ceil(n * LIVE_RESERVE))
        self.daily_backfill = None if policy.daily is None else int(policy.daily * policy.backfill_share)
        self._stats = BudgetStats(api)
        self._lock = threading.Lock()
        self._row_ready = False
        # What this process saw at its last grant: how many tokens the window had left, and the day's count.
        # observe() compares the provider's headers with these and writes only when the provider saw more.
        self._free_seen: int | None = None
        self._day_used_seen: int | None = None
        self.last_grant_at: float | None = None  # the clock value the last grant was recorded at

    def __repr__(self) -> str:
        return f"ApiBudget(api={self.api!r}, account={self.account!r})"

    # -- the row ----------------------------------------------------------------------------------------------
    def _ensure_row(self) -> None:
        if self._row_ready:
            return
        values = {"api": self.api, "account": self.account}
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with self.engine.begin() as conn:
            conn.execute(insert(table).values(**values).on_conflict_do_nothing())
        self._row_ready = True

    def _locked(self, conn: sa.Connection) -> _State:
        c = table.c
        row = conn.execute(
            sa.select(table)
            .where(c.api == self.api, c.account == self.account)
            .with_for_update()  # Postgres: the row lock; SQLite: begin_write holds the write lock already
        ).one()
        return _State.from_row(row)

    def _save(self, conn: sa.Connection, state: _State, **counters: sa.ColumnElement[object] | float) -> None:
        c = table.c
        conn.execute(
            sa.update(table)
            .where(c.api == self.api, c.account == self.account)
            .values(
                grants=state.text(),
                paused_until=state.paused_until,
                live_until=state.live_until,
                day=state.day,
                day_used=state.day_used,
                day_backfill=state.day_backfill,
                **counters,
            )
        )

    # -- deciding -------------------------------------------------------------------------------------------
    def _wait_for(self, state: _State, now: float, priority: Priority, cost: int) -> tuple[float, str]:
        """Seconds until ``cost`` tokens of ``priority`` may be granted (0: now), and why not sooner."""
        now_ms = int(now * 1000)
        n = self.policy.per_window
        waits: list[tuple[float, str]] = [(0.0, "")]
        if state.paused_until is not None and state.paused_until > now:
            waits.append((state.paused_until - now, "paused by the provider"))
        daily = self.policy.daily
        if daily is not None and state.day_used + cost > daily:
            waits.append((_next_midnight(now) - now, "daily limit"))
        if (
            priority == "backfill"
            and self.daily_backfill is not None
            and state.day_backfill + cost > self.daily_backfill
        ):
            waits.append((_next_midnight(now) - now, "backfill share of the daily limit"))
        total = len(state.grants)
        if total + cost > n:
            oldest = state.grants[total + cost - n - 1][0]
            waits.append(((oldest + self.window_ms - now_ms) / 1000, "window full"))
        if priority == "backfill":
            waits.append(self._backfill_wait(state, now, now_ms, cost))
        wait, reason = max(waits)
        return (max(wait, 0.001), reason) if wait > 0 else (0.0, "")

    def _backfill_wait(self, state: _State, now: float, now_ms: int, cost: int) -> tuple[float, str]:
        """The backfill's own limit: the window minus what live, outbound and foreign requests hold in it and
        the reserve, never less than its share; only its share while a live request is waiting."""
        n = self.policy.per_window
        mine = [t for t, k in state.grants if k == _BACKFILL]
        others = [t for t, k in state.grants if k != _BACKFILL]
        waiting = state.live_until is not None and state.live_until > now
        cap = self.backfill_cap if waiting else max(self.backfill_cap, n - len(others) - self.reserve)
        if len(mine) + cost <= cap:
            return 0.0, ""
        # Until enough of our own grants leave the window ...
        oldest = len(mine) + cost - cap - 1
        wait = (mine[oldest] + self.window_ms - now_ms) / 1000 if oldest < len(mine) else self.window_s
        if waiting and state.live_until is not None:
            wait = min(wait, state.live_until - now)  # ... or the live request stops waiting ...
        elif 0 < (excess := len(others) - (n - self.reserve - len(mine) - cost)) <= len(others):
            # ... or enough live grants leave it for the lent part to cover the request.
            wait = min(wait, (others[excess - 1] + self.window_ms - now_ms) / 1000)
        return wait, "backfill share"

    def _try(self, priority: Priority, cost: int, waited: float) -> tuple[float, str]:
        """One transaction: grant now (returns 0) or say how long to wait (recording live demand)."""
        with begin_write(self.engine) as conn:
            state = self._locked(conn)
            now = self.clock()
            state.prune(int(now * 1000), self.window_ms)
            state.roll_day(_utc_day(now))
            wait, reason = self._wait_for(state, now, priority, cost)
            c = table.c
            if wait > 0:
                if priority != "backfill":
                    # A live request is waiting: until it is served, freed tokens are not lent to a backfill.
                    state.live_until = max(state.live_until or 0.0, now + wait + 0.05)
                    self._save(conn, state)
                return wait, reason
            now_ms = math.ceil(now * 1000)  # rounded up: a grant never leaves the window early
            kind = _BACKFILL if priority == "backfill" else ""
            for _ in range(cost):
                bisect.insort(state.grants, (now_ms, kind))
            state.day_used += cost
            if priority == "backfill":
                state.day_backfill += cost
            self._save(
                conn,
                state,
                granted_total=c.granted_total + cost,
                waits_total=c.waits_total + (1 if waited > 0 else 0),
                wait_seconds_total=c.wait_seconds_total + waited,
            )
            self._free_seen = self.policy.per_window - len(state.grants)
            self._day_used_seen = state.day_used
            self.last_grant_at = now
        return 0.0, ""

    # -- the interface ----------------------------------------------------------------------------------------
    def acquire(
        self, priority: Priority = "live", *, cost: int = 1, max_wait_s: float | None = None
    ) -> float:
        """Wait until ``cost`` requests may be sent and take them; returns the seconds waited.

        Raises :class:`BudgetExceeded` (transient) without waiting when the wait would pass ``max_wait_s``
        (a spent daily limit, a long pause).
        """
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {PRIORITIES}, not {priority!r}")
        if not 1 <= cost <= self.policy.per_window:
            raise ValueError(f"cost must be between 1 and per_window ({self.policy.per_window})")
        self._ensure_row()
        started = self.clock()
        waited = 0.0
        while True:
            wait, reason = self._try(priority, cost, waited)
            if wait <= 0:
                break
            if max_wait_s is not None and waited + wait > max_wait_s:
                raise BudgetExceeded(
                    f"{self.api} API budget: the next {priority} request may go in {wait:.1f} s ({reason}), "
                    f"more than the {max_wait_s:.0f} s this caller waits",
                    wait_s=wait,
                )
            self.sleep(wait)
            waited = max(0.0, self.clock() - started)
        with self._lock:
            s = self._stats
            s.requests += cost
            if waited > 0:
                s.waits += 1
                s.wait_s += waited
                s.longest_wait_s = max(s.longest_wait_s, waited)
        return waited

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Take in what the provider said about its limits (after every response)."""
        h = _lower(headers)
        now = self.clock()
        pause: float | None = None
        if status == 429:
            with self._lock:
                self._stats.throttled += 1
            retry_after = _retry_after_s(h.get("retry-after"), now)
            interval_ms = _int_header(h, "x-hubspot-ratelimit-interval-milliseconds")
            if retry_after is None and interval_ms:
                retry_after = interval_ms / 1000
            pause = now + (retry_after if retry_after is not None else self.window_s)
        elif status == 503 and (retry_after := _retry_after_s(h.get("retry-after"), now)) is not None:
            pause = now + retry_after
        if _int_header(h, "x-hubspot-ratelimit-daily-remaining") == 0:
            pause = max(pause or 0.0, _next_midnight(now))
        left = self._provider_left(h) if status != 429 else None
        if left is not None and self._free_seen is not None and left >= self._free_seen:
            left = None  # the provider counts no more than we did: nothing to correct
        day_used = self._provider_day_used(h)
        if day_used is not None and (
            self._day_used_seen is not None and day_used <= self._day_used_seen + self.policy.per_window
        ):
            day_used = None  # close enough; corrected when it drifts by a window's worth
        if pause is None and left is None and day_used is None and status != 429:
            return
        self._ensure_row()
        with begin_write(self.engine) as conn:
            state = self._locked(conn)
            now = self.clock()
            state.prune(int(now * 1000), self.window_ms)
            state.roll_day(_utc_day(now))
            now_ms = math.ceil(now * 1000)
            if pause is not None:
                state.paused_until = max(state.paused_until or 0.0, pause)
            if left is not None:
                free = self.policy.per_window - len(state.grants)
                for _ in range(max(0, free - max(0, left))):
                    bisect.insort(state.grants, (now_ms, _FOREIGN))
            if day_used is not None:
                state.day_used = max(state.day_used, day_used)
            self._save(conn, state, throttled_total=table.c.throttled_total + (1 if status == 429 else 0))
            self._free_seen = self.policy.per_window - len(state.grants)
            self._day_used_seen = state.day_used

    def _provider_left(self, h: Mapping[str, str]) -> int | None:
        """Requests the provider still allows in its window, in terms of our ``per_window``."""
        remaining = _int_header(h, "x-hubspot-ratelimit-remaining")
        if remaining is None:
            return None
        maximum = _int_header(h, "x-hubspot-ratelimit-max")
        if maximum is not None and maximum > self.policy.per_window:
            remaining -= maximum - self.policy.per_window  # we allow ourselves less than the account has
        return remaining

    def _provider_day_used(self, h: Mapping[str, str]) -> int | None:
        remaining = _int_header(h, "x-hubspot-ratelimit-daily-remaining")
        if remaining is None or self.policy.daily is None:
            return None
        daily = _int_header(h, "x-hubspot-ratelimit-daily") or self.policy.daily
        return max(0, min(daily, self.policy.daily) - remaining)

    def stats(self) -> BudgetStats:
        """A copy of this instance's counts (this process, since it was built)."""
        with self._lock:
            s = self._stats
            return BudgetStats(s.api, s.requests, s.waits, s.wait_s, s.longest_wait_s, s.throttled)

    def reset(self) -> None:
        """Forget the shared window, pause and day counts of this API and account (tests, ``db`` tooling)."""
        self._ensure_row()
        with begin_write(self.engine) as conn:
            self._save(conn, _State())
        self._free_seen = self._day_used_seen = None


def api_budget_for(engine: sa.Engine, api: str, account: str = "default", **kw: object) -> ApiBudget | None:
    """The budget of ``api`` when policies.yaml has one, else None (no budget: the API is not limited)."""
    if api not in load_policies().api_budget:
        return None
    return ApiBudget(engine, api, account, **kw)  # type: ignore[arg-type]


def totals(conn: sa.Connection) -> Iterator[BudgetTotals]:
    """Every API and account's running totals (``/metrics``)."""
    c = table.c
    rows = conn.execute(
        sa.select(
            c.api, c.account, c.granted_total, c.waits_total, c.wait_seconds_total, c.throttled_total
        ).order_by(c.api, c.account)
    )
    for r in rows:
        yield BudgetTotals(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), int(r[5]))
