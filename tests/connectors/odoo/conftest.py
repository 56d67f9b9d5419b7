"""The Odoo writer against the local fake (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from integration_assets.connectors.odoo.writer import OdooWriter
from integration_assets.sandbox.fakes.odoo import FakeOdoo
from tests.connectors.conftest import FAST


class Sleeps(list[float]):
    """Records the waits the HTTP client asks for instead of sleeping (Retry-After is asserted, not waited)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_writer(odoo: FakeOdoo, sleeps: Sleeps) -> Iterator[Callable[..., OdooWriter]]:
    made: list[OdooWriter] = []

    def make(**kw: Any) -> OdooWriter:
        kw.setdefault("retry", FAST)
        kw.setdefault("sleep", sleeps)
        kw.setdefault("rng", random.Random(3))
        w = OdooWriter(odoo.url, odoo.db, odoo.login, odoo.api_key, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def writer(make_writer: Callable[..., OdooWriter]) -> OdooWriter:
    return make_writer()


def execute_calls(fake: FakeOdoo) -> list[tuple[str, str, list[Any], dict[str, Any]]]:
    """(model, method, args, kwargs) of every execute_kw the fake received, in order."""
    out = []
    for r in fake.requests:
        params = (r.body or {}).get("params") or {}
        if params.get("method") == "execute_kw":
            a = params["args"]
            out.append((a[3], a[4], a[5], a[6] if len(a) > 6 else {}))
    return out
