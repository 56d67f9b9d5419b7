"""FakeHubSpot.enforce_rate_limit: HubSpot's rolling burst limit with its 429 body and headers."""

from __future__ import annotations

import httpx

from integration_assets.sandbox.fakes.hubspot import FakeHubSpot


def test_rolling_window_answers_429_beyond_the_limit_and_counts_down_the_headers() -> None:
    now = [1000.0]
    fake = FakeHubSpot(clock=lambda: now[0])
    fake.enforce_rate_limit(3, 10.0, retry_after=2)
    with fake, httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.token}"}) as c:
        answers = [c.get("/crm/v3/objects/contacts") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["X-HubSpot-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "3"
        assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert answers[3].json()["policyName"] == "TEN_SECONDLY_ROLLING"
        assert answers[3].headers["Retry-After"] == "2"
        now[0] += 9.9  # still inside the rolling window of the first request
        assert c.get("/crm/v3/objects/contacts").status_code == 429
        now[0] += 0.2  # the first three requests are older than 10 s now
        assert c.get("/crm/v3/objects/contacts").status_code == 200
        fake.enforce_rate_limit(None)
        assert all(c.get("/crm/v3/objects/contacts").status_code == 200 for _ in range(5))
