"""Fixtures for the EasyPost connector: the local fake (a real HTTP server on 127.0.0.1) and a client on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from integration_assets.connectors._retry import HttpRetry
from integration_assets.connectors.easypost import EasyPostClient
from integration_assets.sandbox.fakes.easypost import FakeEasyPost

# Backoffs in milliseconds; Retry-After is still honoured as sent.
FAST = HttpRetry(max_attempts=4, backoff_base=0.02, backoff_cap=0.1, max_wait=30.0)
# Long enough for any honest answer of the fake, short enough that a dropped answer costs little.
SHORT = httpx.Timeout(1.0, connect=1.0)

TO = {
    "name": "Ada Buyer",
    "street1": "417 Montgomery St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94104",
    "country": "US",
    "phone": "4155550100",
}
FROM = {
    "company": "Integration Assets Shop",
    "street1": "388 Townsend St",
    "city": "San Francisco",
    "state": "CA",
    "zip": "94107",
    "country": "US",
    "phone": "4155550199",
}
PARCEL = {"length": 10, "width": 8, "height": 4, "weight": 16}


@pytest.fixture
def easypost() -> Iterator[FakeEasyPost]:
    fake = FakeEasyPost(drop_hold=5.0)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def make_client(easypost: FakeEasyPost) -> Iterator[Callable[..., EasyPostClient]]:
    made: list[EasyPostClient] = []

    def make(**kw: Any) -> EasyPostClient:
        kw.setdefault("retry", FAST)
        kw.setdefault("timeout", SHORT)
        client = EasyPostClient(kw.pop("base_url", easypost.url), kw.pop("api_key", easypost.api_key), **kw)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()
