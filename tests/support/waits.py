"""A bounded wait on a condition (instead of a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout_s: float = 5.0, interval_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy or ``timeout_s`` has passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def wait_until(
    predicate: Callable[[], Any], what: str, timeout_s: float = 180.0, interval_s: float = 0.02
) -> Any:
    """Like ``wait_for``, but a timeout fails the test naming ``what`` was awaited."""
    value = wait_for(predicate, timeout_s, interval_s)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value
