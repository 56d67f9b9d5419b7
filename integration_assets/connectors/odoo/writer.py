"""Odoo writes for the outbound chain: partner, sale order, confirmation, reservation, tracking reference.

Wire format: docs/SOURCES.md §2.5-2.9 (``execute_kw`` with ``create``, ``write``, ``search_read``, ``read``,
``action_confirm``, ``action_assign``). The transport and the error classification are the reader's
(:mod:`.rpc`): transient failures (429 with ``Retry-After``, 5xx, timeouts, session expiry, database
concurrency errors) are retried in place and end as :class:`RetriesExhausted`; Odoo's refusals are terminal
:class:`OdooRpcError` with ``name``, ``message`` and ``field`` (the field a missing-required-value message names).

Exactly once in effect: Odoo's ``create`` is not idempotent and ``client_order_ref`` / ``ref`` are not unique
(§2.6), so ``create`` and ``action_confirm`` are never re-sent once they may have arrived; they raise
:class:`OdooWriteUnconfirmed` (transient) instead, and the caller looks the object up by its key
(:meth:`OdooWriter.find_order`, :meth:`OdooWriter.find_partner`) before creating it again.
:meth:`OdooWriter.confirm_order` re-reads the state itself. ``write`` and ``action_assign`` may be repeated.

Model and field names come from contracts; each is checked against Odoo's identifier rules before it goes on
the wire (:class:`OdooBadIdentifier`). One writer may be shared by the threads of a step runner.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from integration_assets.connectors._http import DEFAULT_TIMEOUT, HttpClient, HttpConnector, StatusRecorder
from integration_assets.connectors._retry import (
    HttpRetry,
    RequestRejected,
    RetriesExhausted,
    RetryBudget,
    classify_http,
)
from integration_assets.connectors.odoo.rpc import (
    GuardTransport,
    OdooAccessDenied,
    OdooRpc,
    OdooRpcError,
    OdooWriteUnconfirmed,
    guarded,
)

__all__ = [
    "OdooBadIdentifier",
    "OdooRpcError",
    "OdooWriteUnconfirmed",
    "OdooWriter",
    "RetriesExhausted",
]

log = logging.getLogger(__name__)

SYSTEM = "odoo"
# Odoo's own rules: model names ``regex_object_name`` (odoo/models.py), fields are PostgreSQL column names
# (``regex_pg_name``, at most 63 bytes). Ours are stricter (lower case only): nothing else occurs in 16/17.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

PARTNER_FIELDS = (
    "name",
    "ref",
    "is_company",
    "street",
    "street2",
    "city",
    "zip",
    "state_id",
    "country_id",
    "email",
    "phone",
    "vat",
    "website",
    "active",
)
ORDER_FIELDS = (
    "name",
    "state",
    "client_order_ref",
    "partner_id",
    "currency_id",
    "amount_untaxed",
    "amount_total",
    "date_order",
    "picking_ids",
    "order_line",
)
CONFIRMED_STATES = frozenset({"sale", "done"})  # 16 has "done" (locked); 17 keeps "sale" + locked
# stock.picking states action_assign can still reserve for (docs/SOURCES.md §2.6)
ASSIGNABLE_STATES = frozenset({"draft", "waiting", "confirmed"})
# The writer lives as long as its step runner; the runner's queue retries (with their attempt limit) are the
# budget. Inside one call a few quick retries ride out a blip without holding a worker for minutes.
DEFAULT_RETRY = HttpRetry(max_attempts=5, backoff_base=0.5, backoff_cap=10.0, max_wait=60.0)
UNLIMITED_BUDGET = 1 << 62


class OdooBadIdentifier(RequestRejected):
    """A model or field name that is not an Odoo identifier; refused before anything is sent."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, status=None, code="bad_identifier")
        self.field = field


def _many2one_id(value: Any) -> int | None:
    if isinstance(value, list | tuple) and value and isinstance(value[0], int):
        return value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _many2one_name(value: Any) -> str | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return str(value[1])
    return None


def _text(value: Any) -> str | None:
    """Odoo sends ``false`` for an empty char field (docs/SOURCES.md §2.2)."""
    return None if value is False or value is None else str(value)


def check_model(model: str) -> str:
    if not isinstance(model, str) or not MODEL_NAME.match(model):
        raise OdooBadIdentifier(f"refusing to call Odoo: {model!r} is not a model name")
    return model


def check_field(name: Any, model: str) -> str:
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise OdooBadIdentifier(
            f"refusing to call Odoo: {name!r} is not a field name (model {model})", field=str(name)[:64]
        )
    return name


def check_values(model: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` for ``create``/``write`` with every key, also inside x2many commands, checked."""
    if not isinstance(values, Mapping):
        raise OdooBadIdentifier(f"refusing to call Odoo: values for {model} are {type(values).__name__}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        check_field(key, model)
        if isinstance(value, list) and value and all(isinstance(c, list | tuple) for c in value):
            # x2many commands [0,0,{vals}] / [1,id,{vals}]: the nested vals are field names too
            for command in value:
                if len(command) == 3 and isinstance(command[2], Mapping):
                    check_values(f"{model}.{key}", command[2])
        out[key] = value
    return out


def check_domain(model: str, domain: Sequence[Any]) -> list[Any]:
    for term in domain:
        if isinstance(term, list | tuple):
            check_field(term[0], model)
        elif term not in ("&", "|", "!"):
            raise OdooBadIdentifier(f"refusing to call Odoo: {term!r} is not a domain term (model {model})")
    return [list(t) if isinstance(t, tuple) else t for t in domain]


class OdooWriter(HttpConnector):
    """The Odoo side of the outbound chain (docs/SOURCES.md §2.5-2.9). Close it, or use it as a context manager."""

    system = SYSTEM

    def __init__(
        self,
        url: str,
        db: str,
        login: str,
        api_key: str,
        *,
        http: HttpClient | None = None,
        status_recorder: StatusRecorder | None = None,
        max_attempts: int | None = None,
        retry: HttpRetry | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        missing = [
            n
            for n, v in (
                ("ODOO_URL", url),
                ("ODOO_DB", db),
                ("ODOO_USERNAME", login),
                ("ODOO_API_KEY", api_key),
            )
            if not v
        ]
        if missing:
            raise OdooAccessDenied(f"Odoo is not configured: set {', '.join(missing)}")
        self.url, self.db, self.login = url.rstrip("/"), db, login
        if http is None:
            policy = retry or DEFAULT_RETRY
            if max_attempts is not None:
                policy = HttpRetry(
                    max_attempts=max_attempts,
                    backoff_base=policy.backoff_base,
                    backoff_cap=policy.backoff_cap,
                    max_wait=policy.max_wait,
                    retry_after_jitter=policy.retry_after_jitter,
                    retry_after_jitter_cap=policy.retry_after_jitter_cap,
                )
            http = HttpClient(
                SYSTEM,
                self.url,
                # The guard keeps create/action_confirm from being re-sent after they may have arrived. An
                # HttpClient passed in should be built over GuardTransport too, or it re-sends them.
                transport=GuardTransport(transport, recorder=status_recorder),
                timeout=timeout,
                retry=policy,
                budget=budget or RetryBudget(UNLIMITED_BUDGET),
                classify=classify_http,
                recorder=status_recorder,
                sleep=sleep,
                rng=rng or random.Random(),  # noqa: S311 - jitter
                secrets=(api_key,),
            )
        self.http = http
        self.rpc = OdooRpc(http, url=self.url, db=db, username=login, api_key=api_key)
        self._codes: dict[tuple[str, int], str | None] = {}  # (model, id) → code of a country / state

    @classmethod
    def from_settings(cls, **kw: Any) -> OdooWriter:
        """The writer for ODOO_URL / ODOO_DB / ODOO_USERNAME / ODOO_API_KEY (keywords as for the constructor)."""
        from integration_assets.settings import get_settings

        s = get_settings()
        return cls(s.odoo_url or "", s.odoo_db or "", s.odoo_username or "", s.odoo_api_key or "", **kw)

    def __repr__(self) -> str:  # never the key
        return f"OdooWriter(url={self.url!r}, db={self.db!r}, login={self.login!r})"

    # -- generic calls (identifiers checked) ----------------------------------------------------------------
    def search_read(
        self,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        *,
        limit: int | None = None,
        order: str = "id asc",
        archived: bool = False,
    ) -> list[dict[str, Any]]:
        check_model(model)
        for f in fields:
            check_field(f, model)
        kwargs: dict[str, Any] = {"fields": list(fields), "order": order}
        if limit:
            kwargs["limit"] = limit
        if archived:
            kwargs["context"] = {"active_test": False}
        rows = self.rpc.execute_kw(model, "search_read", [check_domain(model, domain)], kwargs)
        if not isinstance(rows, list):
            raise OdooRpcError(f"Odoo {model}.search_read returned {type(rows).__name__}, not a list")
        return rows

    def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[dict[str, Any]]:
        check_model(model)
        for f in fields:
            check_field(f, model)
        rows = self.rpc.execute_kw(model, "read", [[int(i) for i in ids], list(fields)])
        if not isinstance(rows, list):
            raise OdooRpcError(f"Odoo {model}.read returned {type(rows).__name__}, not a list")
        return rows

    def create(self, model: str, values: Mapping[str, Any]) -> int:
        """One record; never re-sent once it may have arrived (:class:`OdooWriteUnconfirmed`)."""
        check_model(model)
        vals = check_values(model, values)
        with guarded(f"{model}.create"):
            new_id = self.rpc.execute_kw(model, "create", [vals])
        if not isinstance(new_id, int) or isinstance(new_id, bool):
            raise OdooRpcError(f"Odoo {model}.create returned {new_id!r}, not an id")
        return new_id

    def write(self, model: str, ids: Sequence[int], values: Mapping[str, Any]) -> None:
        """``write`` sets values, so sending it twice is harmless: retried in place."""
        check_model(model)
        vals = check_values(model, values)
        self.rpc.execute_kw(model, "write", [[int(i) for i in ids], vals])

    # -- partners -------------------------------------------------------------------------------------------
    def find_partner(
        self,
        *,
        partner_id: int | None = None,
        ref: str | None = None,
        website_domain: str | None = None,
        vat: str | None = None,
    ) -> dict[str, Any] | None:
        """The partner by stored id, else by ``ref`` (our key), else by VAT, else a company by website domain.

        Archived partners are found too (``active_test: false``): a key lookup that missed an archived
        partner would create a second one. The result says ``active``; the caller decides.
        """
        searches: list[list[Any]] = []
        if ref:
            searches.append([["ref", "=", ref]])
        if vat:
            searches.append([["vat", "=", vat]])
        if partner_id is not None:
            rows = self.search_read(
                "res.partner", [["id", "=", int(partner_id)]], PARTNER_FIELDS, archived=True
            )
            if rows:
                return self._partner(rows[0])
        for domain in searches:
            rows = self.search_read("res.partner", domain, PARTNER_FIELDS, limit=1, archived=True)
            if rows:
                return self._partner(rows[0])
        if website_domain:
            host = _host(website_domain)
            if host:
                rows = self.search_read(
                    "res.partner",
                    [["is_company", "=", True], ["website", "ilike", host]],
                    PARTNER_FIELDS,
                    limit=20,
                    archived=True,
                )
                # ilike is a substring match: keep only the same host (acme.com is not notacme.com)
                for row in rows:
                    if _host(_text(row.get("website")) or "") == host:
                        return self._partner(row)
        return None

    def create_partner(self, values: Mapping[str, Any]) -> int:
        """A new partner; ``values`` carry ``ref`` (``hubspot-company:<id>``), the key :meth:`find_partner` uses."""
        return self.create("res.partner", values)

    def _code(self, model: str, value: Any) -> str | None:
        rid = _many2one_id(value)
        if rid is None:
            return None
        if (model, rid) not in self._codes:
            rows = self.read(model, [rid], ["code"])
            self._codes[(model, rid)] = _text(rows[0].get("code")) if rows else None
        return self._codes[(model, rid)]

    def _partner(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(row["id"]),
            "name": _text(row.get("name")),
            "ref": _text(row.get("ref")),
            "is_company": bool(row.get("is_company")),
            "street": _text(row.get("street")),
            "street2": _text(row.get("street2")),
            "city": _text(row.get("city")),
            "zip": _text(row.get("zip")),
            "state_code": self._code("res.country.state", row.get("state_id")),
            "country_code": self._code("res.country", row.get("country_id")),
            "email": _text(row.get("email")),
            "phone": _text(row.get("phone")),
            "vat": _text(row.get("vat")),
            "active": row.get("active") is not False,
        }

    # -- sale orders ----------------------------------------------------------------------------------------
    def find_order(self, client_order_ref: str) -> dict[str, Any] | None:
        """The order whose ``client_order_ref`` is exactly this key (the oldest, if a duplicate slipped in)."""
        if not client_order_ref:
            raise OdooBadIdentifier("refusing to search sale.order by an empty client_order_ref")
        rows = self.search_read(
            "sale.order", [["client_order_ref", "=", client_order_ref]], ORDER_FIELDS, limit=2, order="id asc"
        )
        if len(rows) > 1:
            log.warning(
                "odoo: %d sale orders carry client_order_ref %s (ids %s); using the oldest",
                len(rows),
                client_order_ref,
                [r["id"] for r in rows],
            )
        return _order(rows[0]) if rows else None

    def read_order(self, order_id: int) -> dict[str, Any]:
        rows = self.read("sale.order", [int(order_id)], ORDER_FIELDS)
        if not rows:
            raise OdooRpcError(
                f"Odoo has no sale.order {order_id}",
                name="odoo.exceptions.MissingError",
                odoo_message="Record does not exist or has been deleted.",
            )
        return _order(rows[0])

    def create_order(self, values: Mapping[str, Any]) -> int:
        """A draft order: ``partner_id``, ``client_order_ref`` (the chain key), ``order_line`` as
        ``[[0, 0, {product_id, product_uom_qty, price_unit, name}], …]``."""
        return self.create("sale.order", values)

    def write_order(self, order_id: int, values: Mapping[str, Any]) -> None:
        self.write("sale.order", [int(order_id)], values)

    def confirm_order(self, order_id: int) -> None:
        """``action_confirm`` (creates the delivery pickings); nothing to do if already confirmed.

        Sent straight away (one call in the usual case). Odoo refuses to confirm a confirmed order with a
        UserError (docs/SOURCES.md §2.6); then, and when the answer was lost, the state is read again: ``sale``
        or ``done`` means confirmed, so a retry never confirms twice and never fails for it.
        """
        try:
            with guarded("sale.order.action_confirm"):
                self.rpc.execute_kw("sale.order", "action_confirm", [[int(order_id)]])
        except (OdooWriteUnconfirmed, OdooRpcError) as exc:
            if isinstance(exc, OdooRpcError) and not exc.name.endswith("UserError"):
                raise
            if self.read_order(order_id)["state"] in CONFIRMED_STATES:
                return
            raise

    def reserve_stock(self, order_id: int) -> list[int]:
        """``action_assign`` on the order's delivery pickings that still wait for stock; the ids of its pickings
        that are not cancelled.

        Not enough stock leaves a picking ``confirmed`` (Odoo's answer is still ``true``): the caller reads the
        states (:meth:`picking_states`) when it needs them. ``stock.picking.sale_id`` comes with sale_stock.
        """
        pickings = self.search_read(
            "stock.picking", [["sale_id", "=", int(order_id)], ["state", "!=", "cancel"]], ["state"]
        )
        todo = [int(p["id"]) for p in pickings if p.get("state") in ASSIGNABLE_STATES]
        if todo:
            self.rpc.execute_kw("stock.picking", "action_assign", [todo])
        return [int(p["id"]) for p in pickings]

    def picking_states(self, picking_ids: Sequence[int]) -> dict[int, str]:
        """State per picking (``confirmed`` = waiting for stock, ``assigned`` = ready)."""
        if not picking_ids:
            return {}
        return {int(p["id"]): str(p["state"]) for p in self.read("stock.picking", picking_ids, ["state"])}

    def write_picking_tracking(self, picking_ids: Sequence[int], tracking_ref: str) -> None:
        """``carrier_tracking_ref`` on the pickings (module ``stock_delivery`` in 17, ``delivery`` in 16)."""
        if picking_ids:
            self.write("stock.picking", picking_ids, {"carrier_tracking_ref": tracking_ref})

    # -- reference data -------------------------------------------------------------------------------------
    def products_by_code(self, codes: Sequence[str]) -> dict[str, int]:
        """``default_code`` → product id for the active products among ``codes`` (the lowest id on a tie)."""
        wanted = sorted({c for c in codes if c})
        if not wanted:
            return {}
        rows = self.search_read("product.product", [["default_code", "in", wanted]], ["default_code"])
        out: dict[str, int] = {}
        for row in rows:  # ascending id
            code = _text(row.get("default_code"))
            if code is not None:
                out.setdefault(code, int(row["id"]))
        return out

    def company_currencies(self) -> set[str]:
        """ISO codes of the currencies of the companies the user can see (a sale order's currency)."""
        rows = self.search_read("res.company", [], ["currency_id"])
        return {name for r in rows if (name := _many2one_name(r.get("currency_id")))}


def _host(text: str) -> str:
    """``https://www.Acme.com/about`` → ``acme.com``."""
    t = text.strip().lower()
    t = re.sub(r"^[a-z][a-z0-9+.-]*://", "", t)
    t = t.split("/", 1)[0].split(":", 1)[0]
    return t.removeprefix("www.")


def _order(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "name": _text(row.get("name")),
        "state": str(row.get("state")),
        "client_order_ref": _text(row.get("client_order_ref")),
        "partner_id": _many2one_id(row.get("partner_id")),
        "currency": _many2one_name(row.get("currency_id")),
        "amount_untaxed": row.get("amount_untaxed"),
        "amount_total": row.get("amount_total"),
        "date_order": _text(row.get("date_order")),
        "picking_ids": [int(i) for i in _ids(row.get("picking_ids"))],
        "order_line": [int(i) for i in _ids(row.get("order_line"))],
    }


def _ids(value: Any) -> Iterable[int]:
    return value if isinstance(value, list) else []
