"""Issue 13 benchmark: a 30-day HubSpot backfill and the live pull sharing one API budget.

A fake HubSpot enforces 100 requests per rolling 10 s (429 ``TEN_SECONDLY_ROLLING`` beyond it) and answers
after 30 ms. Two processes pull at once through the connector seam (``connectors/_http.py`` ``HttpClient``
with ``classify_hubspot``) and one ``ApiBudget`` row in the warehouse:

- the **backfill** (priority ``backfill``): 30 daily partitions of contacts, each a CRM search on
  ``lastmodifieddate`` in the partition's half-open window, 100 per page (300,000 contacts: 10,000 a day,
  100 pages a day, 3,000 requests);
- the **live** pull (priority ``live``): every ``--live-every`` seconds, today's partition (``--live-pages``,
  3 by default).

Reported: the backfill's throughput as a share of the limit (every request answered while it ran, both
processes, over its duration), the 429s (target 0), and the live pull's longest budget wait (target: at most
one 10-s window). The fake synthesises the contacts from their index (a search is O(page), not a scan of
300,000 records), so the figures are the budget's, not the fake's.

    .venv/bin/python bench/api_budget.py                              # the full run (~5 min), SQLite
    .venv/bin/python bench/api_budget.py --postgres                   # the same on PostgreSQL
    .venv/bin/python bench/api_budget.py --contacts 30000 --days 3    # smoke check (~35 s)

See docs/BENCHMARKS.md, "Issue 13: shared API budget".
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration_assets.sandbox.fakes._server import LoggedRequest  # noqa: E402
from integration_assets.sandbox.fakes.hubspot import FakeHubSpot, hs_time  # noqa: E402

DAY0 = datetime(2026, 10, 1, tzinfo=UTC)
PAGE = 100
LIVE_PAGES = 3


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class SyntheticHubSpot(FakeHubSpot):
    """FakeHubSpot (auth, rolling rate limit, headers, latency) whose contacts are computed from their index:
    contact ``i`` was last modified at ``DAY0 + i * step``; the search answers a modified-date window by
    arithmetic. Today's partition (``DAY0 + days``) has ``LIVE_PAGES`` pages of recent edits."""

    def __init__(self, contacts: int, days: int, live_pages: int = LIVE_PAGES) -> None:
        super().__init__()
        self.n, self.days, self.live_pages = contacts, days, live_pages
        self.step_ms = days * 86_400_000 / contacts
        self.start_ms = int(DAY0.timestamp() * 1000)

    def _record(self, i: int, modified_ms: int) -> dict[str, Any]:
        ts = hs_time(datetime.fromtimestamp(modified_ms / 1000, UTC))
        rid = str(1000 + i)
        return {
            "id": rid,
            "properties": {
                "hs_object_id": rid,
                "email": f"contact{i}@example.com",
                "firstname": "Bench",
                "lastname": f"Contact {i}",
                "lastmodifieddate": ts,
                "createdate": ts,
            },
            "createdAt": ts,
            "updatedAt": ts,
            "archived": False,
        }

    def _search(self, object_type: str, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        body = req.body or {}
        filters = {f["operator"]: int(f["value"]) for g in body["filterGroups"] for f in g["filters"]}
        lo, hi = filters["GTE"], filters["LT"]
        offset, limit = int(body.get("after") or 0), int(body.get("limit") or 10)
        if lo >= self.start_ms + self.days * 86_400_000:  # today: live edits, LIVE_PAGES pages
            ids = list(range(self.live_pages * PAGE))
            stamps = [lo + k for k in ids]
        else:
            first = min(self.n, max(0, math.ceil((lo - self.start_ms) / self.step_ms)))
            last = min(self.n, max(0, math.ceil((hi - self.start_ms) / self.step_ms)))
            ids = list(range(first, last))
            stamps = [int(self.start_ms + i * self.step_ms) for i in ids]
        page = list(zip(ids, stamps, strict=True))[offset : offset + limit]
        out: dict[str, Any] = {"total": len(ids), "results": [self._record(i, ms) for i, ms in page]}
        if offset + limit < len(ids):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, {}, out


@dataclass
class PullerResult:
    role: str
    requests: int
    pages: int
    records: int
    started: float
    finished: float
    waits: list[float]  # the budget's wait before each request


def _search_window(http: Any, lo: datetime, hi: datetime, waits: list[float]) -> tuple[int, int]:
    """Every page of contacts modified in [lo, hi); returns (pages, records)."""
    after: str | None = "0"
    pages = records = 0
    while after is not None:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "lastmodifieddate",
                            "operator": "GTE",
                            "value": int(lo.timestamp() * 1000),
                        },
                        {
                            "propertyName": "lastmodifieddate",
                            "operator": "LT",
                            "value": int(hi.timestamp() * 1000),
                        },
                    ]
                }
            ],
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["email", "firstname", "lastname", "lastmodifieddate"],
            "limit": PAGE,
            "after": after,
        }
        before = http.budget_wait_s
        data = http.request("POST", "/crm/v3/objects/contacts/search", json=body).json()
        waits.append(http.budget_wait_s - before)
        pages += 1
        records += len(data["results"])
        after = ((data.get("paging") or {}).get("next") or {}).get("after")
    return pages, records


def _client(url: str, base_url: str, token: str, role: str, per_window: int, window_s: float) -> Any:
    from integration_assets.connectors._http import HttpClient
    from integration_assets.connectors.hubspot.errors import classify_hubspot
    from integration_assets.policies import ApiBudgetPolicy
    from integration_assets.warehouse.api_budget import ApiBudget
    from integration_assets.warehouse.db import get_engine

    engine = get_engine(url)
    engine.dispose(close=False)  # forked: open our own connections
    policy = ApiBudgetPolicy(per_window=per_window, window=timedelta(seconds=window_s), backfill_share=0.5)
    budget = ApiBudget(engine, "hubspot", policy=policy)
    return HttpClient(
        "hubspot",
        base_url,
        headers={"Authorization": f"Bearer {token}"},
        classify=classify_hubspot,
        api_budget=budget,
        priority="backfill" if role == "backfill" else "live",
    )


def backfill(
    url: str, base_url: str, token: str, days: int, per_window: int, window_s: float, done: Event, out: Any
) -> None:
    waits: list[float] = []
    pages = records = 0
    with _client(url, base_url, token, "backfill", per_window, window_s) as http:
        started = time.time()
        for d in range(days):
            p, r = _search_window(http, DAY0 + timedelta(days=d), DAY0 + timedelta(days=d + 1), waits)
            pages, records = pages + p, records + r
        finished = time.time()
        out.put(asdict(PullerResult("backfill", http.calls, pages, records, started, finished, waits)))
    done.set()


def live(
    url: str,
    base_url: str,
    token: str,
    days: int,
    per_window: int,
    window_s: float,
    every: float,
    done: Event,
    out: Any,
) -> None:
    waits: list[float] = []
    pages = records = 0
    today = DAY0 + timedelta(days=days)
    with _client(url, base_url, token, "live", per_window, window_s) as http:
        started = time.time()
        while True:
            tick = time.time()
            p, r = _search_window(http, today, today + timedelta(days=1), waits)
            pages, records = pages + p, records + r
            if done.wait(max(0.0, every - (time.time() - tick))):
                break
        out.put(asdict(PullerResult("live", http.calls, pages, records, started, time.time(), waits)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from integration_assets.warehouse import db

    tmp = tempfile.TemporaryDirectory(prefix="bench-api-budget-")
    pg_name = None
    if args.postgres:
        from bench.pgdb import fresh_database

        pg_name, url = fresh_database("bench_api_budget")
    else:
        url = f"sqlite:///{tmp.name}/warehouse.db"
        db.upgrade(url)
    with db.get_engine(url).begin() as conn:  # a clean budget row for this run
        conn.exec_driver_sql("DELETE FROM api_budget WHERE api = 'hubspot'")
    db.get_engine(url).dispose()
    fake = SyntheticHubSpot(args.contacts, args.days, args.live_pages)
    fake.enforce_rate_limit(args.per_window, args.window)
    fake.latency = args.latency
    ctx = multiprocessing.get_context("fork")
    done, out = ctx.Event(), ctx.Queue()
    with fake:
        log(
            f"{args.contacts:,} contacts over {args.days} days, {args.per_window} requests / {args.window:g} s, "
            f"{args.latency * 1000:.0f} ms latency, {url.split(':')[0]}"
        )
        procs = [
            ctx.Process(
                target=backfill,
                args=(url, fake.url, fake.token, args.days, args.per_window, args.window, done, out),
            ),
            ctx.Process(
                target=live,
                args=(
                    url,
                    fake.url,
                    fake.token,
                    args.days,
                    args.per_window,
                    args.window,
                    args.live_every,
                    done,
                    out,
                ),
            ),
        ]
        for p in procs:
            p.start()
        results = {r["role"]: r for r in (out.get() for _ in procs)}
        for p in procs:
            p.join()
        log_ = list(fake.requests)
    tmp.cleanup()
    if pg_name is not None:
        from bench.pgdb import drop_database

        drop_database(pg_name)
    bf, lv = results["backfill"], results["live"]
    duration = bf["finished"] - bf["started"]
    answered = [r for r in log_ if bf["started"] <= r.at <= bf["finished"]]
    limit_rate = args.per_window / args.window
    live_waits = lv["waits"]
    # Sliding check over what the fake received: the most requests any rolling window held.
    times = sorted(r.at for r in log_ if r.status == 200)
    peak, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - args.window:
            j += 1
        peak = max(peak, i - j + 1)
    return {
        "contacts": args.contacts,
        "days": args.days,
        "warehouse": url.split(":")[0],
        "limit": f"{args.per_window} / {args.window:g} s",
        "latency_ms": args.latency * 1000,
        "backfill_s": round(duration, 1),
        "backfill_records": bf["records"],
        "backfill_requests": bf["requests"],
        "live_requests": lv["requests"],
        "live_pages_per_pull": args.live_pages,
        "requests_during_backfill": len(answered),
        "throughput_pct_of_limit": round(100 * len(answered) / (duration * limit_rate), 1),
        "backfill_only_pct_of_limit": round(100 * bf["requests"] / (duration * limit_rate), 1),
        "http_429": sum(1 for r in log_ if r.status == 429),
        "peak_in_any_window": peak,
        "live_longest_wait_s": round(max(live_waits), 2),
        "live_median_wait_s": round(statistics.median(live_waits), 3),
        "live_waits_over_window": sum(1 for w in live_waits if w > args.window),
        "backfill_longest_wait_s": round(max(bf["waits"]), 2),
    }


def acquire_cost(url: str, n: int = 600) -> dict[str, float]:
    """Milliseconds per acquire (one transaction) and per observe of an ordinary 200 (no write), in this process,
    with a window holding up to 90 grants as in the run."""
    from integration_assets.policies import ApiBudgetPolicy
    from integration_assets.warehouse.api_budget import ApiBudget
    from integration_assets.warehouse.db import get_engine

    policy = ApiBudgetPolicy(per_window=100, window=timedelta(seconds=10))
    budget = ApiBudget(get_engine(url), "bench", policy=policy)
    headers = {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "99"}
    acquire = observe = 0.0
    for i in range(n):
        if i % 90 == 0:
            budget.reset()
        t0 = time.perf_counter()
        budget.acquire("backfill")
        t1 = time.perf_counter()
        budget.observe(200, headers)
        acquire, observe = acquire + t1 - t0, observe + time.perf_counter() - t1
    return {"acquire_ms": round(1000 * acquire / n, 3), "observe_ms": round(1000 * observe / n, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-window", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--latency", type=float, default=0.030)
    parser.add_argument("--live-every", type=float, default=20.0, help="seconds between live pulls")
    parser.add_argument("--live-pages", type=int, default=LIVE_PAGES, help="pages of today's partition")
    parser.add_argument(
        "--postgres", action="store_true", help="a throw-away PostgreSQL database (default: a SQLite file)"
    )
    parser.add_argument(
        "--acquire-cost", action="store_true", help="only measure the cost of one acquire and one observe"
    )
    args = parser.parse_args()
    if args.acquire_cost:
        from integration_assets.warehouse import db

        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/warehouse.db"
            db.upgrade(url)
            costs = {"sqlite": acquire_cost(url)}
        from bench.pgdb import drop_database, fresh_database

        name, url = fresh_database("bench_api_budget_cost")
        try:
            costs["postgresql"] = acquire_cost(url)
        finally:
            drop_database(name)
        print(json.dumps(costs, indent=2))
        return
    result = run(args)
    print(json.dumps(result, indent=2))
    log(
        f"throughput {result['throughput_pct_of_limit']} % of the limit, {result['http_429']} x 429, "
        f"live longest wait {result['live_longest_wait_s']} s"
    )


if __name__ == "__main__":
    main()
