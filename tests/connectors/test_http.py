"""The shared HTTP layer: Retry-After (both forms), backoff, budget, timeouts, classification, secrets, paging.

Through ``httpx.MockTransport`` (the one seam) with an injected sleep and clock: no real waiting.
"""

from __future__ import annotations

import email.utils
import logging
import random

import httpx
import pytest

from integration_assets.connectors._http import HttpClient
from integration_assets.connectors._paging import PagingStuck, ascending_pages
from integration_assets.connectors._retry import (
    HttpRetry,
    RequestRejected,
    RetriesExhausted,
    RetryBudget,
    Throttle,
    classify_http,
    parse_retry_after,
)
from integration_assets.errors import TerminalError, TransientError

NOW = 1_800_000_000.0


class Script:
    """A transport answering from a list of responses (or exceptions), recording what it was sent."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(
    script: Script,
    *,
    retry: HttpRetry | None = None,
    budget: RetryBudget | None = None,
    secrets: tuple[str, ...] = (),
) -> tuple[HttpClient, list[float], list[int | None]]:
    sleeps: list[float] = []
    statuses: list[int | None] = []
    client = HttpClient(
        "testsys",
        "https://api.example.test",
        headers={"Authorization": "Bearer s3cr3t-token"},
        transport=httpx.MockTransport(script),
        retry=retry or HttpRetry(),
        budget=budget,
        recorder=statuses.append,
        sleep=sleeps.append,
        clock=lambda: NOW,
        rng=random.Random(1),
        secrets=secrets,
    )
    return client, sleeps, statuses


def test_retry_after_both_forms() -> None:
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    assert parse_retry_after(email.utils.formatdate(NOW + 90, usegmt=True), NOW) == pytest.approx(90.0)
    assert parse_retry_after(email.utils.formatdate(NOW - 90, usegmt=True), NOW) == 0.0  # already past
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("", NOW) is None


def test_default_classification() -> None:
    def verdict(status: int, **headers: str) -> tuple[str, float | None]:
        v = classify_http(httpx.Response(status, headers=headers), NOW)
        return v.action, v.retry_after

    assert verdict(200) == ("ok", None)
    assert verdict(207) == ("ok", None)
    assert verdict(429, **{"Retry-After": "3"}) == ("retry", 3.0)
    assert verdict(503) == ("retry", None)
    assert verdict(500)[0] == verdict(502)[0] == verdict(504)[0] == verdict(408)[0] == "retry"
    assert verdict(400)[0] == verdict(404)[0] == verdict(422)[0] == "terminal"


def test_retry_after_is_honoured_never_earlier() -> None:
    date = email.utils.formatdate(NOW + 4, usegmt=True)
    script = Script(
        httpx.Response(429, headers={"Retry-After": "3"}),
        httpx.Response(503, headers={"Retry-After": date}),
        httpx.Response(200, json={"ok": True}),
    )
    client, sleeps, statuses = make(script)
    assert client.request("GET", "/x").json() == {"ok": True}
    assert statuses == [429, 503, 200]  # every attempt counted, as the provider saw it
    assert 3.0 <= sleeps[0] <= 3.3 and 4.0 <= sleeps[1] <= 4.4  # at least what was asked, a little jitter


def test_backoff_is_exponential_jittered_and_capped() -> None:
    script = Script(httpx.Response(502))
    client, sleeps, _ = make(script, retry=HttpRetry(max_attempts=8, backoff_base=1.0, backoff_cap=8.0))
    with pytest.raises(RetriesExhausted) as err:
        client.request("GET", "/x")
    assert isinstance(err.value, TransientError) and err.value.attempts == 8 and err.value.last_status == 502
    assert len(sleeps) == 7
    for n, s in enumerate(sleeps):
        d = min(8.0, 2.0**n)
        assert d / 2 <= s <= d, (n, s)  # "equal jitter": half the backoff, plus up to half again
    assert len(script.requests) == 8


def test_retry_budget_is_shared_by_the_requests_of_a_run() -> None:
    budget = RetryBudget(limit=3)
    script = Script(httpx.Response(503), httpx.Response(503), httpx.Response(200), httpx.Response(503))
    client, _, _ = make(script, budget=budget)
    client.request("GET", "/a")  # two retries
    with pytest.raises(RetriesExhausted, match="retry budget of 3 is spent"):
        client.request("GET", "/b")  # one more retry, then the budget is gone
    assert budget.used == 3 and len(script.requests) == 5


def test_a_wait_longer_than_max_wait_is_not_slept_on() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}))
    client, sleeps, _ = make(script, retry=HttpRetry(max_wait=300))
    with pytest.raises(RetriesExhausted, match="more than max_wait"):
        client.request("GET", "/x")
    assert sleeps == [] and len(script.requests) == 1


def test_client_errors_are_terminal_and_not_retried() -> None:
    script = Script(httpx.Response(400, json={"message": "bad filter"}))
    client, sleeps, statuses = make(script)
    with pytest.raises(RequestRejected) as err:
        client.request("GET", "/x")
    assert isinstance(err.value, TerminalError) and err.value.status == 400 and "bad filter" in str(err.value)
    assert sleeps == [] and statuses == [400]


def test_timeouts_and_dropped_connections_are_transient_and_recorded() -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.Response(200))
    client, sleeps, statuses = make(script)
    assert client.request("GET", "/x").status_code == 200
    assert statuses == [None, None, 200] and len(sleeps) == 2

    script = Script(httpx.ReadTimeout("slow"))
    client, _, statuses = make(script, retry=HttpRetry(max_attempts=3))
    with pytest.raises(RetriesExhausted, match="timed out"):
        client.request("GET", "/x")
    assert statuses == [None, None, None]


def test_secrets_never_reach_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(
        httpx.Response(503, text="upstream said s3cr3t-token"), httpx.Response(400, text="echo: s3cr3t-token")
    )
    client, _, _ = make(script, secrets=("s3cr3t-token",))
    with pytest.raises(RequestRejected) as err:
        client.request("GET", "/x")
    assert "s3cr3t-token" not in str(err.value) and "[REDACTED]" in str(err.value)
    assert "s3cr3t-token" not in caplog.text
    assert "s3cr3t-token" not in repr(client)
    assert (
        script.requests[0].headers["Authorization"] == "Bearer s3cr3t-token"
    )  # it was sent, just never shown


def test_throttle_spaces_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    t = Throttle(0.2, clock=lambda: now[0], sleep=sleep)
    t.wait()
    now[0] += 0.05
    t.wait()
    now[0] += 0.5
    t.wait()
    assert slept == [pytest.approx(0.15)]


def _paged(records: list[dict], page: int, cap: int | None = None) -> tuple[list, list]:
    """fetch() over ``records`` (sorted by v, id) with >= filtering and offset tokens, as a provider would."""
    calls: list[tuple] = []

    def fetch(lower, token):
        calls.append((lower, token))
        rows = [r for r in records if lower is None or r["v"] >= lower]
        offset = int(token or 0)
        if cap is not None and offset >= cap:
            raise AssertionError("paged past the cap")
        chunk = rows[offset : offset + page]
        return chunk, (str(offset + page) if offset + page < len(rows) else None)

    return fetch, calls


def test_ascending_pages_restart_from_the_last_value_and_page_through_ties() -> None:
    records = [{"id": str(i), "v": v} for i, v in enumerate([1, 2, 3, 3, 3, 3, 3, 3, 4, 5, 5, 6], start=1)]
    fetch, calls = _paged(records, page=3)
    got = [
        r
        for page in ascending_pages(fetch, start=None, version=lambda r: r["v"], ident=lambda r: r["id"])
        for r in page
    ]
    assert [r["id"] for r in got] == [r["id"] for r in records]  # each once, in order
    assert all(lower is not None for lower, _ in calls[1:])  # restarted from a value, not followed deep
    assert any(token is not None for _, token in calls)  # the run of 3s needed the token


def test_ascending_pages_refuse_to_page_past_a_cap() -> None:
    records = [{"id": str(i), "v": 7} for i in range(30)]
    fetch, _ = _paged(records, page=5, cap=10)
    with pytest.raises(PagingStuck):
        for _ in ascending_pages(
            fetch, start=0, version=lambda r: r["v"], ident=lambda r: r["id"], max_token=6
        ):
            pass
