"""Odoo reference data the order step reads for every chain (the company's currencies, the product of a SKU),
remembered for a few minutes per Odoo writer.

Why: a chain's Odoo calls bound the throughput (at most ``outbound.concurrency.odoo`` in flight), and these
two reads were 2 of them. Only
what Odoo answered is remembered: a currency or a SKU not found asks Odoo again at once, so adding it in Odoo
(the fix for a dead letter, then ``dlq replay``) works without waiting for the cache.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# How long a currency set or a product id is trusted: a product archived and recreated under the same code
# gets a new id, which the next read after this picks up.
TTL_S = 300.0


@dataclass
class _Cache:
    currencies: frozenset[str] = frozenset()
    currencies_at: float = float("-inf")
    products: dict[str, tuple[int, float]] = field(default_factory=dict)  # code -> (id, read at)
    lock: threading.Lock = field(default_factory=threading.Lock)


_caches: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(odoo: Any) -> _Cache:
    with _caches_lock:
        cache = _caches.get(odoo)
        if cache is None:
            cache = _caches[odoo] = _Cache()
        return cache


def company_uses(
    odoo: Any, currency: str, *, clock: Callable[[], float] = time.monotonic
) -> tuple[bool, set[str]]:
    """Whether the Odoo company uses ``currency`` (ISO code), and the codes it uses."""
    cache = _cache(odoo)
    with cache.lock:
        fresh = clock() - cache.currencies_at < TTL_S
        known = cache.currencies
    if fresh and currency in known:
        return True, set(known)
    codes = frozenset(c.upper() for c in odoo.company_currencies())
    with cache.lock:
        cache.currencies, cache.currencies_at = codes, clock()
    return currency in codes, set(codes)


def products_by_code(
    odoo: Any, codes: Sequence[str], *, clock: Callable[[], float] = time.monotonic
) -> dict[str, int]:
    """``default_code`` → product id for ``codes``; Odoo is asked only for the codes not remembered."""
    cache = _cache(odoo)
    now = clock()
    out: dict[str, int] = {}
    with cache.lock:
        for code in codes:
            hit = cache.products.get(code)
            if hit is not None and now - hit[1] < TTL_S:
                out[code] = hit[0]
    missing = sorted({c for c in codes if c not in out})
    if missing:
        found = odoo.products_by_code(missing)
        with cache.lock:
            for code, pid in found.items():
                cache.products[code] = (int(pid), now)
        out.update({c: int(p) for c, p in found.items()})
    return out
