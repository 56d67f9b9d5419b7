"""Odoo 16/17 external API over JSON-RPC: ``search_read`` of the models the ``odoo.*.api`` contracts map.

Wire format: docs/SOURCES.md §2. Every call is ``POST <ODOO_URL>/jsonrpc`` with the envelope
``{"jsonrpc": "2.0", "method": "call", "id": n, "params": {"service", "method", "args"}}``:
``common.authenticate(db, login, api_key, {})`` gives the uid (``false`` for a bad login), then
``object.execute_kw(db, uid, api_key, model, "search_read", [domain], {fields, limit, offset, order, context})``.

Incremental by ``write_date`` (UTC, whole seconds on the wire): ``domain [["write_date", ">=", last]]``,
``order "write_date asc, id asc"``, ``limit``/``offset`` pages. Like the HubSpot search, each page restarts the
query from the last ``write_date`` seen (:func:`~integration_assets.connectors._paging.ascending_pages`): a record
written during the pull moves ahead of the reader instead of shifting the offsets under it; ``offset`` is only
used to page through more records with one ``write_date`` than a page holds. Only ``>=`` is used on
``write_date`` (never ``=``), so the pull is right whether the database keeps sub-second times or not.

A partition window (:meth:`OdooClient.pull_window`) adds ``["write_date", "<", end]`` to the same query: the
half-open ``[start, end)`` in Odoo's UTC ``YYYY-MM-DD HH:MM:SS``.

``context.active_test = false``: archived partners and products are read too (the contracts map ``active``).
``account.move`` is limited to invoices, credit notes and receipts (the ``invoices`` table), not every journal
entry.

Errors arrive as HTTP 200 with a JSON-RPC ``error`` member (§2.4); the transport and their classification are
shared with the writer in :mod:`.rpc`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from integration_assets.connectors._http import DEFAULT_TIMEOUT, HttpClient, HttpConnector, StatusRecorder
from integration_assets.connectors._paging import ascending_pages
from integration_assets.connectors._retry import HttpRetry, RetryBudget, classify_http
from integration_assets.connectors.landing import Pull
from integration_assets.connectors.odoo.rpc import (
    OdooAccessDenied,
    OdooAccessError,
    OdooRpc,
    OdooRpcError,
    classify_rpc_error,
)
from integration_assets.contracts.spec import contracts_for

SYSTEM = "odoo"
# In load order: partners and products before the orders and invoices that point to them, orders before lines.
MODELS: tuple[str, ...] = ("res.partner", "product.product", "sale.order", "sale.order.line", "account.move")
ODOO_DATETIME = "%Y-%m-%d %H:%M:%S"  # UTC, no zone marker (docs/SOURCES.md §2.2)
PAGE_SIZE = 500
ORDER = "write_date asc, id asc"
INVOICE_TYPES = ["out_invoice", "out_refund", "in_invoice", "in_refund", "out_receipt", "in_receipt"]
BASE_DOMAIN: dict[str, list[Any]] = {"account.move": [["move_type", "in", INVOICE_TYPES]]}
# write_date is the transaction's start time: a long transaction commits records older than what a pull
# running meanwhile already saw. Re-read that much before the watermark.
DEFAULT_OVERLAP = timedelta(minutes=5)


def contract_fields(model: str) -> tuple[str, ...]:
    """The fields the contracts of ``model`` map, plus ``write_date`` (``id`` always comes back)."""
    fields: set[str] = {"write_date"}
    for c in contracts_for(SYSTEM, model):
        fields.update(src for src in c.fields if "." not in src and src != "id")
    return tuple(sorted(fields))


def odoo_time(ts: datetime) -> str:
    """A domain value for a datetime field: UTC, whole seconds (rounded down, so ``>=`` includes the second)."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts
    return ts.strftime(ODOO_DATETIME)


class OdooClient(HttpConnector):
    """The live Odoo JSON-RPC connector (one per run; close it, or use it as a context manager)."""

    system = SYSTEM
    entities = MODELS

    def __init__(
        self,
        url: str,
        db: str,
        username: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: HttpRetry | None = None,
        budget: RetryBudget | None = None,
        recorder: StatusRecorder | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        page_size: int = PAGE_SIZE,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> None:
        missing = [
            n
            for n, v in (
                ("ODOO_URL", url),
                ("ODOO_DB", db),
                ("ODOO_USERNAME", username),
                ("ODOO_API_KEY", api_key),
            )
            if not v
        ]
        if missing:
            raise OdooAccessDenied(f"Odoo is not configured: set {', '.join(missing)}")
        self.url, self.db, self.username = url.rstrip("/"), db, username
        self._api_key = api_key
        self.page_size = page_size
        self.overlap = overlap
        self.http = HttpClient(
            SYSTEM,
            self.url,
            transport=transport,
            timeout=timeout,
            retry=retry or HttpRetry(),
            budget=budget or RetryBudget(),
            classify=classify_http,
            recorder=recorder,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter
            secrets=(api_key,),
        )
        self.rpc = OdooRpc(self.http, url=self.url, db=db, username=username, api_key=api_key)

    def __repr__(self) -> str:
        return f"OdooClient(url={self.url!r}, db={self.db!r}, username={self.username!r})"

    # -- JSON-RPC (connectors/odoo/rpc.py) -----------------------------------------------------------------
    def call(self, service: str, method: str, args: Sequence[Any], *, what: str | None = None) -> Any:
        """One JSON-RPC call; returns ``result``."""
        return self.rpc.call(service, method, args, what=what)

    def version(self) -> dict[str, Any]:
        return dict(self.call("common", "version", []))

    def authenticate(self) -> int:
        """The uid of ``username`` (cached); :class:`OdooAccessDenied` for a wrong login or key."""
        return self.rpc.authenticate()

    def execute_kw(
        self, model: str, method: str, args: Sequence[Any], kwargs: dict[str, Any] | None = None
    ) -> Any:
        return self.rpc.execute_kw(model, method, args, kwargs)

    # -- reading -------------------------------------------------------------------------------------------
    def search_read_pages(
        self,
        model: str,
        *,
        fields: Sequence[str],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Records of ``model`` written at or after ``since`` (all when None) and before ``until`` (no bound when
        None), ascending by write_date and id."""
        base = BASE_DOMAIN.get(model, [])
        upper = [["write_date", "<", odoo_time(until)]] if until is not None else []

        def fetch(lower: str | None, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            domain = [*base, *([["write_date", ">=", lower]] if lower else []), *upper]
            offset = int(token or 0)
            rows = self.execute_kw(
                model,
                "search_read",
                [domain],
                {
                    "fields": list(fields),
                    "limit": self.page_size,
                    "offset": offset,
                    "order": ORDER,
                    "context": {"active_test": False},
                },
            )
            if not isinstance(rows, list):
                raise OdooRpcError(f"Odoo {model}.search_read returned {type(rows).__name__}, not a list")
            return rows, (str(offset + len(rows)) if len(rows) >= self.page_size else None)

        yield from ascending_pages(
            fetch,
            start=odoo_time(since) if since else None,
            version=lambda r: str(r.get("write_date") or ""),
            ident=lambda r: str(r.get("id")),
        )

    # -- Source --------------------------------------------------------------------------------------------
    def pull(self, entity: str, since: datetime | None) -> Pull:
        if entity not in MODELS:
            raise ValueError(f"unknown Odoo model {entity!r}; one of {', '.join(MODELS)}")
        return Pull(self.search_read_pages(entity, fields=contract_fields(entity), since=since), ordered=True)

    def pull_window(self, entity: str, start: datetime, end: datetime) -> Iterator[list[dict[str, Any]]]:
        """The pages of one partition window: records with ``start <= write_date < end``."""
        if entity not in MODELS:
            raise ValueError(f"unknown Odoo model {entity!r}; one of {', '.join(MODELS)}")
        return self.search_read_pages(entity, fields=contract_fields(entity), since=start, until=end)

    def record_id(self, entity: str, record: dict[str, Any]) -> str:
        return str(record.get("id"))

    def version_of(self, entity: str, record: dict[str, Any]) -> datetime:
        value = record.get("write_date")
        if not value:
            return datetime(1970, 1, 1, tzinfo=UTC)
        return datetime.strptime(str(value)[:19], ODOO_DATETIME).replace(tzinfo=UTC)


__all__ = [
    "MODELS",
    "OdooAccessDenied",
    "OdooAccessError",
    "OdooClient",
    "OdooRpcError",
    "classify_rpc_error",
    "contract_fields",
    "odoo_time",
]
