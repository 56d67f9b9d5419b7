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

``context.active_test = false``: archived partners and products are read too (the contracts map ``active``).
``account.move`` is limited to invoices, credit notes and receipts (the ``invoices`` table), not every journal
entry.

Errors arrive as HTTP 200 with a JSON-RPC ``error`` member (§2.4). Session expiry (code 100) and database
concurrency errors are transient and retried by the shared HTTP layer; ``AccessDenied`` (wrong key),
``AccessError`` (no right on the model), ``ValidationError``, ``UserError``, ``MissingError`` and anything
else are terminal: :class:`OdooAccessDenied`, :class:`OdooAccessError`, :class:`OdooRpcError`. Messages name
the user, database and model, never the key.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from integration_assets.connectors._http import DEFAULT_TIMEOUT, HttpClient, StatusRecorder
from integration_assets.connectors._paging import ascending_pages
from integration_assets.connectors._retry import (
    HttpRetry,
    RequestRejected,
    RetryBudget,
    Verdict,
    classify_http,
)
from integration_assets.connectors.landing import Pull
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

SESSION_EXPIRED_CODE = 100  # "Odoo Session Expired" (odoo/http.py)
TRANSIENT_ERROR_MARKERS = (
    "SessionExpired",
    "SerializationFailure",
    "OperationalError",
    "LockNotAvailable",
    "TransactionRollbackError",
    "DeadlockDetected",
    "InterfaceError",
)


class OdooRpcError(RequestRejected):
    """Odoo answered a call with a JSON-RPC ``error`` that retrying will not fix."""

    def __init__(self, message: str, *, name: str = "", code: int | None = None) -> None:
        super().__init__(message, status=200, code=name or None)
        self.name = name
        self.rpc_code = code


class OdooAccessDenied(OdooRpcError):
    """Wrong login or API key (``authenticate`` returned false, or ``odoo.exceptions.AccessDenied``)."""


class OdooAccessError(OdooRpcError):
    """The user may not read the model (``odoo.exceptions.AccessError``)."""


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


def classify_rpc_error(error: dict[str, Any], *, what: str, username: str, db: str) -> Verdict:
    """Transient or terminal, from the ``error`` member's ``code`` and ``data.name`` (docs/SOURCES.md §2.4)."""
    code = error.get("code")
    raw = error.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = str(data.get("name") or "")
    message = " ".join(str(data.get("message") or error.get("message") or "").split())[:500]
    short = name.rsplit(".", 1)[-1] or str(error.get("message") or "error")
    if code == SESSION_EXPIRED_CODE or any(m in name for m in TRANSIENT_ERROR_MARKERS):
        return Verdict("retry", reason=f"Odoo {what}: {short} (code {code}): {message}")
    if short == "AccessDenied":
        return Verdict(
            "terminal",
            error=OdooAccessDenied(
                f"Odoo denied access for {what} to user {username!r} on database {db!r} (AccessDenied: {message}); "
                f"check ODOO_USERNAME and ODOO_API_KEY (an API key belongs to its user)",
                name=name,
                code=code,
            ),
        )
    if short == "AccessError":
        return Verdict(
            "terminal",
            error=OdooAccessError(
                f"Odoo user {username!r} may not {what} on database {db!r} (AccessError: {message}); give the "
                f"integration user read access to the model",
                name=name,
                code=code,
            ),
        )
    return Verdict(
        "terminal",
        error=OdooRpcError(f"Odoo rejected {what} ({short}, code {code}): {message}", name=name, code=code),
    )


class OdooClient:
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
        self._ids = itertools.count(1)
        self._uid: int | None = None

    def __repr__(self) -> str:
        return f"OdooClient(url={self.url!r}, db={self.db!r}, username={self.username!r})"

    def __enter__(self) -> OdooClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- JSON-RPC ------------------------------------------------------------------------------------------
    def _classify(self, what: str, response: httpx.Response, now: float) -> Verdict:
        verdict = classify_http(response, now)
        if verdict.action != "ok":
            if response.status_code == 404:
                return Verdict(
                    "terminal",
                    reason=f"no JSON-RPC endpoint at {self.url}/jsonrpc (HTTP 404): check ODOO_URL",
                )
            return verdict
        try:
            data = response.json()
        except ValueError:
            return Verdict(
                "terminal",
                reason=f"{self.url}/jsonrpc did not answer JSON (check ODOO_URL): {response.text[:120]!r}",
            )
        if not isinstance(data, dict) or ("result" not in data and "error" not in data):
            return Verdict("terminal", reason=f"{self.url}/jsonrpc answered something that is not JSON-RPC")
        if data.get("error") is not None:
            error = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            return classify_rpc_error(error, what=what, username=self.username, db=self.db)
        return Verdict.ok()

    def call(self, service: str, method: str, args: Sequence[Any], *, what: str | None = None) -> Any:
        """One JSON-RPC call; returns ``result`` (retries and errors as the module docstring says)."""
        what = what or f"{service}.{method}"
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": next(self._ids),
            "params": {"service": service, "method": method, "args": list(args)},
        }
        response = self.http.request(
            "POST", "/jsonrpc", json=payload, classify=functools.partial(self._classify, what)
        )
        return response.json().get("result")

    def version(self) -> dict[str, Any]:
        return dict(self.call("common", "version", []))

    def authenticate(self) -> int:
        """The uid of ``username`` (cached); :class:`OdooAccessDenied` for a wrong login or key."""
        if self._uid is None:
            uid = self.call("common", "authenticate", [self.db, self.username, self._api_key, {}])
            if not uid or isinstance(uid, bool):
                raise OdooAccessDenied(
                    f"Odoo login failed for user {self.username!r} on database {self.db!r}: wrong ODOO_USERNAME or "
                    f"ODOO_API_KEY, an archived user, or the wrong ODOO_DB",
                    name="authenticate",
                )
            self._uid = int(uid)
        return self._uid

    def execute_kw(
        self, model: str, method: str, args: Sequence[Any], kwargs: dict[str, Any] | None = None
    ) -> Any:
        uid = self.authenticate()
        return self.call(
            "object",
            "execute_kw",
            [self.db, uid, self._api_key, model, method, list(args), kwargs or {}],
            what=f"{model}.{method}",
        )

    # -- reading -------------------------------------------------------------------------------------------
    def search_read_pages(
        self,
        model: str,
        *,
        fields: Sequence[str],
        since: datetime | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Records of ``model`` written at or after ``since`` (all when None), ascending by write_date and id."""
        base = BASE_DOMAIN.get(model, [])

        def fetch(lower: str | None, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            domain = [*base, *([["write_date", ">=", lower]] if lower else [])]
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

    def record_id(self, entity: str, record: dict[str, Any]) -> str:
        return str(record.get("id"))

    def version_of(self, entity: str, record: dict[str, Any]) -> datetime:
        value = record.get("write_date")
        if not value:
            return datetime(1970, 1, 1, tzinfo=UTC)
        return datetime.strptime(str(value)[:19], ODOO_DATETIME).replace(tzinfo=UTC)
