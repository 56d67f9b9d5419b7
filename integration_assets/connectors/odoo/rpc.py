"""Odoo's JSON-RPC transport, shared by the reader (:mod:`.client`) and the writer (:mod:`.writer`).

Wire format: docs/SOURCES.md §2.1 and §2.4. Every call is ``POST <ODOO_URL>/jsonrpc``; errors arrive as HTTP 200
with a JSON-RPC ``error`` member whose ``data.name`` is the Python exception class on the server. Session
expiry (code 100) and database concurrency errors are transient and retried by the shared HTTP layer;
``AccessDenied`` (wrong key), ``AccessError`` (no right on the model), ``ValidationError``, ``UserError``,
``MissingError`` and anything else are terminal: :class:`OdooAccessDenied`, :class:`OdooAccessError`,
:class:`OdooRpcError`. Messages name the user, database and model, never the key.

Writes that are not idempotent (``create``, ``action_confirm``) run with ``guarded=True``: once such a request
may have reached Odoo (a read timeout, a connection dropped before the answer, HTTP 500/502/504), it is not
sent again, because Odoo may have committed it (docs/SOURCES.md §2.9). The call raises
:class:`OdooWriteUnconfirmed` (transient) and the caller looks the object up by its key before creating it again.
A request that provably never arrived (connection refused, 429, 503, a JSON-RPC concurrency error, which Odoo
rolls back) is still retried in place.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from integration_assets.connectors._http import HttpClient, StatusRecorder
from integration_assets.connectors._retry import RequestRejected, RetriesExhausted, Verdict, classify_http

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
# A gateway or server failure after the request went out: Odoo may have committed it (503 is a refusal).
UNCONFIRMED_STATUSES = frozenset({500, 502, 504})

# The field a "missing required value" message names, in the texts Odoo 15-18 use (docs/SOURCES.md §2.8, §2.9):
# "...Model: Sales Order (sale.order)\nField: Customer Reference (client_order_ref)\n" (odoo/service/model.py,
# NOT NULL re-raised as ValidationError), "Missing required value for the field 'Customer' (partner_id)"
# (odoo/models.py, convert_pgerror_not_null) and the older "...field 'Name' (name)".
_FIELD_PATTERNS = (
    re.compile(r"(?m)^\s*Field:\s*(?P<label>[^\n]*?)\s*\((?P<name>[a-z_][a-z0-9_]*)\)\s*$"),
    re.compile(r"Missing required value for the field '(?P<label>[^']*)' \((?P<name>[a-z_][a-z0-9_]*)\)"),
    re.compile(r"[Ff]ield '(?P<label>[^']*)' \((?P<name>[a-z_][a-z0-9_]*)\)"),
)
_MODEL_PATTERN = re.compile(r"Model:\s*'?(?P<label>[^'\n(]*?)'?\s*\((?P<name>[a-z0-9_.]+)\)")


class OdooRpcError(RequestRejected):
    """Odoo answered a call with a JSON-RPC ``error`` that retrying will not fix.

    ``name`` is the server's exception class (``odoo.exceptions.ValidationError``), ``message`` Odoo's own text
    (one line), ``field`` the technical name of the field a missing-required-value message names, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        code: int | None = None,
        odoo_message: str = "",
        field: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, status=200, code=name or None)
        self.name = name
        self.rpc_code = code
        self.message = odoo_message or message
        self.field = field
        self.model = model


class OdooAccessDenied(OdooRpcError):
    """Wrong login or API key (``authenticate`` returned false, or ``odoo.exceptions.AccessDenied``)."""


class OdooAccessError(OdooRpcError):
    """The user may not read or write the model (``odoo.exceptions.AccessError``)."""


class OdooWriteUnconfirmed(RetriesExhausted):
    """A write that is not idempotent may have been committed, but its answer never came back.

    Transient: the next attempt must look the object up by its key (``client_order_ref``, partner ``ref``)
    before creating it, or re-read the state before confirming.
    """


def missing_field(message: str) -> tuple[str | None, str | None]:
    """(field, model) that an Odoo "mandatory field is not set" message names, else (None, None)."""
    for pattern in _FIELD_PATTERNS:
        if m := pattern.search(message):
            model = _MODEL_PATTERN.search(message)
            return m.group("name"), (model.group("name") if model else None)
    return None, None


def classify_rpc_error(error: dict[str, Any], *, what: str, username: str, db: str) -> Verdict:
    """Transient or terminal, from the ``error`` member's ``code`` and ``data.name`` (docs/SOURCES.md §2.4)."""
    code = error.get("code")
    raw = error.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = str(data.get("name") or "")
    full = str(data.get("message") or error.get("message") or "")
    message = " ".join(full.split())[:500]
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
                odoo_message=message,
            ),
        )
    if short == "AccessError":
        return Verdict(
            "terminal",
            error=OdooAccessError(
                f"Odoo user {username!r} may not {what} on database {db!r} (AccessError: {message}); give the "
                f"integration user access to the model",
                name=name,
                code=code,
                odoo_message=message,
            ),
        )
    field, model = missing_field(full) if short in ("ValidationError", "UserError") else (None, None)
    named = f" (field {field!r})" if field else ""
    return Verdict(
        "terminal",
        error=OdooRpcError(
            f"Odoo rejected {what}{named} ({short}, code {code}): {message}",
            name=name,
            code=code,
            odoo_message=message,
            field=field,
            model=model,
        ),
    )


# --- the guard for writes that must not be sent twice -----------------------------------------------------

_guarded: contextvars.ContextVar[str | None] = contextvars.ContextVar("odoo_guarded_write", default=None)


class GuardTransport(httpx.BaseTransport):
    """Wraps the real transport: inside a guarded call, a request that may have arrived is not retried.

    Connection refused / connect timeout / pool timeout mean the request never left: those stay retryable.
    Anything after the request was written (read timeout, a dropped connection) raises
    :class:`OdooWriteUnconfirmed`, which the shared HTTP client does not retry.
    """

    def __init__(self, inner: httpx.BaseTransport | None = None, *, recorder: StatusRecorder | None = None):
        self.inner = inner or httpx.HTTPTransport()
        self.recorder = recorder

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        what = _guarded.get()
        if what is None:
            return self.inner.handle_request(request)
        try:
            return self.inner.handle_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            raise
        except httpx.TransportError as exc:
            if self.recorder is not None:
                self.recorder(None)
            raise OdooWriteUnconfirmed(
                f"odoo {what}: no answer after the request was sent ({type(exc).__name__}); Odoo may have "
                f"committed it, so it is not sent again: look it up before retrying",
                attempts=1,
                last_status=None,
            ) from exc

    def close(self) -> None:
        self.inner.close()


@contextmanager
def guarded(what: str) -> Iterator[None]:
    """Run the calls inside as writes that must not be sent twice (see the module docstring)."""
    token = _guarded.set(what)
    try:
        yield
    finally:
        _guarded.reset(token)


# --- the session ---------------------------------------------------------------------------------------------


class OdooRpc:
    """Login and ``execute_kw`` over one :class:`HttpClient`; thread-safe for concurrent calls."""

    def __init__(self, http: HttpClient, *, url: str, db: str, username: str, api_key: str) -> None:
        self.http = http
        self.url, self.db, self.username = url.rstrip("/"), db, username
        self._api_key = api_key
        self._ids = itertools.count(1)
        self._uid: int | None = None
        self._login_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OdooRpc(url={self.url!r}, db={self.db!r}, username={self.username!r})"

    def _classify(self, what: str, response: httpx.Response, now: float) -> Verdict:
        verdict = classify_http(response, now)
        if verdict.action != "ok":
            if response.status_code == 404:
                return Verdict(
                    "terminal",
                    reason=f"no JSON-RPC endpoint at {self.url}/jsonrpc (HTTP 404): check ODOO_URL",
                )
            if _guarded.get() is not None and response.status_code in UNCONFIRMED_STATUSES:
                return Verdict(
                    "terminal",
                    error=OdooWriteUnconfirmed(
                        f"odoo {what}: HTTP {response.status_code} after the request was sent; Odoo may have "
                        f"committed it, so it is not sent again: look it up before retrying",
                        attempts=1,
                        last_status=response.status_code,
                    ),
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

    def authenticate(self) -> int:
        """The uid of ``username`` (cached); :class:`OdooAccessDenied` for a wrong login or key."""
        if self._uid is None:
            with self._login_lock:
                if self._uid is None:
                    uid = self.call("common", "authenticate", [self.db, self.username, self._api_key, {}])
                    if not uid or isinstance(uid, bool):
                        raise OdooAccessDenied(
                            f"Odoo login failed for user {self.username!r} on database {self.db!r}: wrong "
                            f"ODOO_USERNAME or ODOO_API_KEY, an archived user, or the wrong ODOO_DB",
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
