"""A local Odoo 17 ``/jsonrpc`` endpoint that speaks the documented wire format (docs/SOURCES.md §2).

Reading: ``common.version``, ``common.authenticate`` / ``common.login`` (``false`` for a bad login, not an error),
``object.execute_kw`` with ``search_read``, ``search``, ``search_count`` and ``read``: domains in Odoo's prefix
notation (``&``, ``|``, ``!``; ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``, ``like``,
``ilike``), ``order``, ``offset``/``limit``, ``context.active_test`` (archived records hidden unless false).
Values as Odoo sends them: many2one ``[id, "name"]``, ``false`` for empty, datetimes ``YYYY-MM-DD HH:MM:SS`` UTC.

Writing (§2.5-2.9): ``create`` (one vals dict → id, a list → ids; x2many commands ``[0,0,vals]``, ``[1,id,vals]``,
``[2,id,0]``, ``[3,id,0]``, ``[4,id,0]``, ``[5,0,0]``, ``[6,0,ids]``), ``write`` (→ ``true``), all or nothing per
call. ``sale.order``: name from the sequence ``S00001``…, currency of the company, ``amount_*`` from the lines,
``action_confirm`` (draft/sent → sale; a ``stock.picking`` in state ``confirmed`` with one ``stock.move`` per
consumable or storable line), ``action_cancel``. ``stock.picking.action_assign`` reserves from the products'
``qty_available`` (storable) or fully (consumable); nothing reserved leaves the picking ``confirmed``, as Odoo
does; ``carrier_tracking_ref`` is writable. A required field missing, a many2one to nothing, an unknown field,
method or model, a private method: Odoo's error and text, in an HTTP 200 JSON-RPC ``error``.

Errors as Odoo sends them: HTTP 200 with a JSON-RPC ``error`` member ``{code, message, data: {name, debug,
message, arguments, context}}`` (:func:`rpc_error`); a wrong key in ``execute_kw`` is
``odoo.exceptions.AccessDenied``. Fault knobs: :meth:`FakeOdoo.fail_next` (a JSON-RPC error),
:meth:`~FakeOdoo.require_field` (a newly required field), :meth:`~FakeOdoo.commit_then_drop` (the write commits,
the answer is lost), :meth:`~FakeOdoo.fail_http` (429 with ``Retry-After``, 5xx), :meth:`~FakeOdoo.slow_next`,
:meth:`~FakeOdoo.cancel_order` (a user cancels in the UI), plus ``fault``/``latency`` of the base server.
The server is threaded; every read and write runs under one lock, so concurrent calls see whole writes.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest

__all__ = ["FakeOdoo", "rpc_error", "session_expired_fault"]

FMT = "%Y-%m-%d %H:%M:%S"
ERROR_CODES = {"odoo.http.SessionExpiredException": 100}
ERROR_MESSAGES = {100: "Odoo Session Expired"}
VALIDATION = "odoo.exceptions.ValidationError"
USER_ERROR = "odoo.exceptions.UserError"
MISSING = "odoo.exceptions.MissingError"
ACCESS_ERROR = "odoo.exceptions.AccessError"
PRIVATE_METHOD = re.compile(r"^(_.*|init)$")  # odoo/models.py check_method_name

# _description of each model (the "Model: …" line of Odoo's messages)
MODEL_LABELS = {
    "res.partner": "Contact",
    "product.product": "Product Variant",
    "sale.order": "Sales Order",
    "sale.order.line": "Sales Order Line",
    "account.move": "Journal Entry",
    "stock.picking": "Transfer",
    "stock.move": "Stock Move",
    "res.company": "Companies",
    "res.currency": "Currency",
    "res.country": "Country",
    "res.country.state": "Country state",
}
# many2one fields → the model they point to (None: a model the fake does not keep)
MANY2ONE: dict[str, dict[str, str | None]] = {
    "res.partner": {
        "parent_id": "res.partner",
        "country_id": "res.country",
        "state_id": "res.country.state",
        "company_id": "res.company",
    },
    "product.product": {"categ_id": None},
    "sale.order": {
        "partner_id": "res.partner",
        "currency_id": "res.currency",
        "user_id": None,
        "company_id": "res.company",
    },
    "sale.order.line": {"order_id": "sale.order", "product_id": "product.product"},
    "account.move": {"partner_id": "res.partner", "currency_id": "res.currency"},
    "stock.picking": {"sale_id": "sale.order", "partner_id": "res.partner", "company_id": "res.company"},
    "stock.move": {
        "picking_id": "stock.picking",
        "product_id": "product.product",
        "sale_line_id": "sale.order.line",
    },
    "res.company": {"currency_id": "res.currency"},
    "res.country.state": {"country_id": "res.country"},
}
# one2many fields: (model, field) → (comodel, inverse many2one)
ONE2MANY: dict[tuple[str, str], tuple[str, str]] = {
    ("sale.order", "order_line"): ("sale.order.line", "order_id"),
    ("sale.order", "picking_ids"): ("stock.picking", "sale_id"),
    ("stock.picking", "move_ids"): ("stock.move", "picking_id"),
}
# NOT NULL columns of the real schema, with their labels (required=True and no default in 17)
REQUIRED: dict[str, dict[str, str]] = {
    "sale.order": {"partner_id": "Customer"},
    "sale.order.line": {"order_id": "Order Reference"},
    "product.product": {"name": "Name"},
    "res.company": {"name": "Company Name"},
}
# Fields the ORM computes: written values are ignored (the fake recomputes them)
COMPUTED: dict[str, frozenset[str]] = {
    "sale.order": frozenset(
        {
            "name",
            "amount_untaxed",
            "amount_tax",
            "amount_total",
            "currency_id",
            "picking_ids",
            "delivery_status",
        }
    ),
    "sale.order.line": frozenset({"price_subtotal", "price_total", "qty_delivered", "qty_invoiced"}),
}
COUNTRIES = {
    "US": (233, "United States"),
    "DE": (57, "Germany"),
    "FR": (75, "France"),
    "GB": (231, "United Kingdom"),
    "CA": (38, "Canada"),
}
CONFIRMED_LINE_REMOVED = (
    "Once a sales order is confirmed, you can't remove one of its lines (we need to track if something gets "
    "invoiced or delivered).\nSet the quantity to 0 instead."
)
CURRENCIES = {"USD": 1, "EUR": 2, "GBP": 3, "CAD": 4}


def not_null_message(model: str, field: str, label: str) -> str:
    """``_as_validation_error`` for a NOT NULL violation (odoo/service/model.py, 16/17)."""
    return (
        "The operation cannot be completed:\n"
        "- Create/update: a mandatory field is not set.\n"
        "- Delete: another model requires the record being deleted. If possible, archive it instead.\n\n"
        f"Model: {MODEL_LABELS.get(model, model)} ({model})\n"
        f"Field: {label} ({field})\n"
    )


def missing_value_message(model: str, field: str, label: str) -> str:
    """``convert_pgerror_not_null`` (odoo/models.py), the text of ``load`` and of some other paths."""
    return f"Missing required value for the field '{label}' ({field})"


def foreign_key_message(model: str, field: str) -> str:
    return (
        "The operation cannot be completed: another model requires the record being deleted. "
        "If possible, archive it instead.\n\n"
        f"Model: {MODEL_LABELS.get(model, model)} ({model})\n"
        f"Constraint: {model.replace('.', '_')}_{field}_fkey\n"
    )


def rpc_error(request_id: Any, name: str, message: str, code: int | None = None) -> dict[str, Any]:
    """Odoo's JSON-RPC error envelope (``JsonRPCDispatcher.handle_error``)."""
    code = code if code is not None else ERROR_CODES.get(name, 200)
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": code,
            "message": ERROR_MESSAGES.get(code, "Odoo Server Error"),
            "data": {
                "name": name,
                "debug": f"Traceback (most recent call last):\n  …\n{name}: {message}\n",
                "message": message,
                "arguments": [message],
                "context": {},
            },
        },
    }


class _RpcFailure(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


class _DropConnection(Exception):
    """Raised out of the handler: the server closes the socket without an answer (base server: handle_error)."""


@dataclass
class _Drop:
    method: str
    model: str
    times: int
    mode: Literal["drop", "timeout"]
    delay: float


@dataclass
class _HttpFault:
    fault: Fault
    times: int
    method: str | None
    model: str | None


def rpc_target(body: Any) -> tuple[str | None, str | None]:
    """(model, method) of an ``execute_kw`` request body, (None, service method) otherwise."""
    params = body.get("params") if isinstance(body, dict) else None
    if not isinstance(params, dict):
        return None, None
    args = params.get("args") or []
    if params.get("method") == "execute_kw" and len(args) > 4:
        return str(args[3]), str(args[4])
    return None, params.get("method")


def _value(v: Any) -> Any:
    """What a domain compares: the id of a many2one pair."""
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], int):
        return v[0]
    return v


def _leaf(rec: dict[str, Any], leaf: list[Any]) -> bool:
    field, op, arg = leaf
    v = _value(rec.get(field, False))
    if op in ("=", "=="):
        return v == arg
    if op == "!=":
        return v != arg
    if op in ("in", "not in"):
        inside = v in (arg or [])
        return inside if op == "in" else not inside
    if op in ("like", "ilike"):
        return isinstance(v, str) and (str(arg).lower() in v.lower() if op == "ilike" else str(arg) in v)
    if v is False or v is None:
        return False
    try:
        return {"<": v < arg, "<=": v <= arg, ">": v > arg, ">=": v >= arg}[op]
    except KeyError:
        raise _RpcFailure("builtins.ValueError", f"Invalid leaf {leaf!r}") from None
    except TypeError:
        raise _RpcFailure("builtins.ValueError", f"Cannot compare {field} with {arg!r}") from None


def domain_matches(rec: dict[str, Any], domain: list[Any]) -> bool:
    """Odoo's prefix-notation domain, top-level terms ANDed."""
    stack: list[bool] = []
    for term in reversed(domain):
        if term == "&":
            a, b = stack.pop(), stack.pop()
            stack.append(a and b)
        elif term == "|":
            a, b = stack.pop(), stack.pop()
            stack.append(a or b)
        elif term == "!":
            stack.append(not stack.pop())
        elif isinstance(term, list | tuple) and len(term) == 3:
            stack.append(_leaf(rec, list(term)))
        else:
            raise _RpcFailure("builtins.ValueError", f"Invalid domain term {term!r}")
    return all(stack)


def _fields(names: str) -> tuple[str, ...]:
    return (*names.split(), "display_name", "create_date", "write_date")


class FakeOdoo(FakeServer):
    """An Odoo database in memory: ``models[model][id] = record`` with Odoo wire values."""

    # Fields per model as Odoo 17 names them (docs/SOURCES.md §2.3); create_date / write_date / display_name on all.
    MODEL_FIELDS: dict[str, tuple[str, ...]] = {
        "res.partner": _fields(
            "name ref email phone mobile is_company parent_id street street2 city zip state_id "
            "country_id vat website company_id active"
        ),
        "product.product": _fields(
            "default_code name barcode list_price standard_price type categ_id qty_available active"
        ),
        "sale.order": _fields(
            "name partner_id date_order amount_untaxed amount_tax amount_total currency_id company_id "
            "state invoice_status delivery_status client_order_ref origin note user_id order_line "
            "picking_ids"
        ),
        "sale.order.line": _fields(
            "order_id product_id name display_type product_uom_qty qty_delivered qty_invoiced "
            "price_unit discount price_subtotal price_total"
        ),
        "account.move": _fields(
            "name move_type state payment_state partner_id invoice_date invoice_date_due "
            "amount_untaxed amount_tax amount_total amount_residual currency_id invoice_origin"
        ),
        "stock.picking": _fields(
            "name origin sale_id partner_id company_id picking_type_code move_type state "
            "scheduled_date date_done carrier_tracking_ref move_ids"
        ),
        "stock.move": _fields("name picking_id product_id sale_line_id product_uom_qty quantity state"),
        "res.company": _fields("name currency_id"),
        "res.currency": _fields("name symbol active"),
        "res.country": _fields("name code"),
        "res.country.state": _fields("name code country_id"),
    }

    def __init__(
        self,
        *,
        db: str = "odoo",
        login: str = "bot@example.com",
        api_key: str = "fake-odoo-api-key",
        uid: int = 7,
        clock: Callable[[], float] = time.time,
        currency: str = "USD",
    ) -> None:
        self._user_fault: Callable[[LoggedRequest], Fault | None] | None = None
        super().__init__()
        self.db, self.login, self.api_key, self.uid = db, login, api_key, uid
        self.clock = clock
        # per instance: require_field / add_field add custom fields (x_studio_…) to this database only
        self.MODEL_FIELDS = {m: tuple(fields) for m, fields in type(self).MODEL_FIELDS.items()}
        self.models: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in self.MODEL_FIELDS}
        self._failures: list[tuple[Callable[[dict[str, Any]], bool], str, str]] = []
        self._required: dict[str, dict[str, tuple[str, str]]] = {}  # model → field → (label, style)
        self._drops: list[_Drop] = []
        self._http_faults: list[_HttpFault] = []
        self._sequence: dict[str, int] = {"sale.order": 0, "stock.picking": 0}
        self.reserved: dict[int, float] = {}  # product id → quantity reserved by open moves
        for code, cid in CURRENCIES.items():
            self._put("res.currency", cid, {"name": code, "symbol": code, "active": True})
        for code, (cid, name) in COUNTRIES.items():
            self._put("res.country", cid, {"name": name, "code": code})
        self._put("res.company", 1, {"name": "My Company", "currency_id": self._currency(currency)})

    # -- faults ---------------------------------------------------------------------------------------------
    # The base server calls ``self.fault(req)``; tests may still assign their own ``fault``: it runs after the
    # queued faults of fail_http / slow_next.
    @property  # type: ignore[override]
    def fault(self) -> Callable[[LoggedRequest], Fault | None] | None:
        return self._next_fault

    @fault.setter
    def fault(self, value: Callable[[LoggedRequest], Fault | None] | None) -> None:
        self._user_fault = value

    def _next_fault(self, req: LoggedRequest) -> Fault | None:
        model, method = rpc_target(req.body)
        with self.lock:
            for queued in self._http_faults:
                if (queued.method is None or queued.method == method) and (
                    queued.model is None or queued.model == model
                ):
                    queued.times -= 1
                    if queued.times <= 0:
                        self._http_faults.remove(queued)
                    return queued.fault
        return self._user_fault(req) if self._user_fault is not None else None

    def fail_http(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        retry_after_form: Literal["seconds", "date"] = "seconds",
        method: str | None = None,
        model: str | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` matching calls with HTTP ``status`` (429 / 5xx), nothing executed."""
        default = {"message": "Too Many Requests"} if status == 429 else None
        fault = Fault(
            status,
            body=body if body is not None else default,
            retry_after=retry_after,
            retry_after_form=retry_after_form,
            label=f"{status}",
        )
        with self.lock:
            self._http_faults.append(_HttpFault(fault, times, method, model))

    def slow_next(
        self, delay: float, *, times: int = 1, method: str | None = None, model: str | None = None
    ) -> None:
        """Answer the next ``times`` matching calls normally, ``delay`` seconds late."""
        with self.lock:
            self._http_faults.append(_HttpFault(Fault(0, delay=delay, label="slow"), times, method, model))

    def require_field(
        self,
        model: str,
        field: str,
        label: str,
        *,
        style: Literal["not_null", "missing_value"] = "not_null",
    ) -> None:
        """From now on ``create`` on ``model`` without ``field`` fails as Odoo does for a NOT NULL column
        (``style="not_null"``: odoo/service/model.py's ValidationError) or with the "Missing required value"
        text (``style="missing_value"``). A field the model does not have yet is added (a new custom field)."""
        with self.lock:
            self.add_field(model, field)
            self._required.setdefault(model, {})[field] = (label, style)

    def add_field(self, model: str, field: str) -> None:
        """A custom field on ``model`` (as Studio adds ``x_studio_…``); existing records hold ``false``."""
        with self.lock:
            if field not in self.MODEL_FIELDS[model]:
                self.MODEL_FIELDS[model] = (*self.MODEL_FIELDS[model], field)
                for rec in self.models[model].values():
                    rec.setdefault(field, False)

    def drop_requirement(self, model: str, field: str) -> None:
        with self.lock:
            self._required.get(model, {}).pop(field, None)

    def commit_then_drop(
        self,
        method: str,
        model: str,
        times: int = 1,
        *,
        mode: Literal["drop", "timeout"] = "drop",
        delay: float = 5.0,
    ) -> None:
        """The next ``times`` successful ``model.method`` calls commit, then the answer is lost: ``drop`` closes
        the connection without a response; ``timeout`` answers ``delay`` seconds late (set the client's timeout
        shorter)."""
        with self.lock:
            self._drops.append(_Drop(method, model, times, mode, delay))

    def _take_drop(self, model: str | None, method: str | None) -> _Drop | None:
        for drop in self._drops:
            if drop.method == method and drop.model == model:
                drop.times -= 1
                if drop.times <= 0:
                    self._drops.remove(drop)
                return drop
        return None

    def fail_next(
        self,
        name: str,
        message: str,
        *,
        when: Callable[[dict[str, Any]], bool] = lambda p: True,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls whose params match ``when`` with the JSON-RPC error ``name``."""
        with self.lock:
            for _ in range(times):
                self._failures.append((when, name, message))

    # -- data ----------------------------------------------------------------------------------------------
    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime(FMT)

    def _put(self, model: str, rid: int, values: dict[str, Any]) -> None:
        now = self.now()
        rec: dict[str, Any] = {f: False for f in self.MODEL_FIELDS[model]}
        rec.update(values, id=rid, create_date=now, write_date=now)
        rec["display_name"] = rec.get("name") or f"{model},{rid}"
        self.models[model][rid] = rec

    def _currency(self, code: str) -> list[Any]:
        for rec in self.models["res.currency"].values():
            if rec["name"] == code:
                return [rec["id"], code]
        cid = max(self.models["res.currency"], default=0) + 1
        self._put("res.currency", cid, {"name": code, "symbol": code, "active": True})
        return [cid, code]

    def add(self, model: str, values: dict[str, Any], *, write_date: datetime | str | None = None) -> int:
        with self.lock:
            rid = max(self.models[model], default=0) + 1
            wd = write_date.strftime(FMT) if isinstance(write_date, datetime) else (write_date or self.now())
            rec: dict[str, Any] = {f: False for f in self.MODEL_FIELDS[model]}
            for (parent, field), _inverse in ONE2MANY.items():
                if parent == model:
                    rec[field] = []
            rec.update(values)
            rec.update(id=rid, write_date=wd, create_date=rec.get("create_date") or wd)
            rec["display_name"] = rec.get("display_name") or rec.get("name") or f"{model},{rid}"
            if "active" in rec and values.get("active") is None:
                rec["active"] = True
            self.models[model][rid] = rec
            # the parent's one2many lists the new child (Odoo computes it from the inverse many2one)
            for (parent, field), (comodel, inverse) in ONE2MANY.items():
                if comodel == model and (pid := _value(rec.get(inverse))) and pid in self.models[parent]:
                    children = self.models[parent][pid][field]
                    if isinstance(children, list) and rid not in children:
                        children.append(rid)
            if model in self._sequence and isinstance(rec.get("name"), str):
                m = re.search(r"(\d+)$", rec["name"])
                if m:
                    self._sequence[model] = max(self._sequence[model], int(m.group(1)))
            return rid

    def touch(self, model: str, ids: Iterable[int], *, at: datetime | None = None, **values: Any) -> None:
        """Write ``values`` to records; their write_date becomes ``at`` (default: now)."""
        with self.lock:
            wd = at.strftime(FMT) if at else self.now()
            for rid in ids:
                self.models[model][rid].update(values, write_date=wd)

    def add_product(
        self,
        default_code: str,
        *,
        name: str | None = None,
        price: float = 10.0,
        qty_available: float = 100.0,
        type: Literal["product", "consu", "service"] = "product",  # noqa: A002 - Odoo's field name
        active: bool = True,
    ) -> int:
        """A product for order lines: storable by default, ``qty_available`` on hand."""
        return self.add(
            "product.product",
            {
                "default_code": default_code,
                "name": name or f"Product {default_code}",
                "list_price": float(price),
                "standard_price": round(float(price) / 2, 2),
                "type": type,
                "categ_id": [1, "All / Saleable"],
                "qty_available": float(qty_available),
                "active": active,
            },
        )

    def add_partner(
        self,
        name: str,
        *,
        ref: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        street: str = "1 Main St",
        city: str = "Springfield",
        zip: str = "62701",  # noqa: A002 - Odoo's field name
        country_code: str = "US",
        state_code: str | None = None,
        website: str | None = None,
        vat: str | None = None,
        is_company: bool = True,
        active: bool = True,
    ) -> int:
        """A partner with an address (state and country as Odoo links them)."""
        with self.lock:
            country = self._country(country_code)
            state = self._state(state_code, country) if state_code else False
            return self.add(
                "res.partner",
                {
                    "name": name,
                    "ref": ref or False,
                    "email": email or False,
                    "phone": phone or False,
                    "street": street,
                    "city": city,
                    "zip": zip,
                    "country_id": country,
                    "state_id": state,
                    "website": website or False,
                    "vat": vat or False,
                    "is_company": is_company,
                    "active": active,
                },
            )

    def _country(self, code: str) -> list[Any]:
        for rec in self.models["res.country"].values():
            if rec["code"] == code:
                return [rec["id"], rec["name"]]
        rid = self.add("res.country", {"name": code, "code": code})
        return [rid, code]

    def _state(self, code: str, country: list[Any]) -> list[Any]:
        for rec in self.models["res.country.state"].values():
            if rec["code"] == code and _value(rec["country_id"]) == country[0]:
                return [rec["id"], rec["display_name"]]
        label = f"{code} ({self.models['res.country'][country[0]]['code']})"
        rid = self.add(
            "res.country.state", {"name": code, "code": code, "country_id": country, "display_name": label}
        )
        return [rid, label]

    def set_company_currency(self, code: str) -> None:
        """The company's currency (what new orders get); orders already made keep theirs."""
        with self.lock:
            self.models["res.company"][1]["currency_id"] = self._currency(code)

    def cancel_order(self, order_id: int) -> None:
        """A user cancels the order in the UI: state ``cancel``, open pickings cancelled, reservations freed."""
        with self.lock:
            self._cancel(self.models["sale.order"][order_id])

    def orders(self, client_order_ref: str | None = None) -> list[dict[str, Any]]:
        """Sale orders (all, or those with this ``client_order_ref``), as stored."""
        with self.lock:
            return [
                dict(r)
                for r in self.models["sale.order"].values()
                if client_order_ref is None or r["client_order_ref"] == client_order_ref
            ]

    def pickings(self, order_id: int) -> list[dict[str, Any]]:
        with self.lock:
            ids = self.models["sale.order"][order_id]["picking_ids"] or []
            return [dict(self.models["stock.picking"][i]) for i in ids]

    def seed(
        self,
        *,
        partners: int = 12,
        products: int = 6,
        orders: int = 8,
        lines_per_order: int = 3,
        invoices: int = 5,
        seed: int = 1,
        start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(minutes=3),
    ) -> None:
        """Deterministic records the ``odoo.*.api`` contracts accept, ``step`` apart in write_date."""
        rng = random.Random(seed)  # noqa: S311 - reproducible test data
        t = start
        countries = [[233, "United States"], [57, "Germany"], [75, "France"], False]
        partner_ids: list[int] = []
        for i in range(partners):
            t += step
            company = i % 3 == 0
            parent = partner_ids[-1] if not company and partner_ids and i % 2 else False
            partner_ids.append(
                self.add(
                    "res.partner",
                    {
                        "name": f"Partner {i:04d}" + (" Inc" if company else ""),
                        "email": f"partner{i}@example.com",
                        "phone": f"+1 555 02{i % 100:02d}" if i % 4 else False,
                        "mobile": False,
                        "is_company": company,
                        "parent_id": [parent, f"Partner {parent - 1:04d} Inc"] if parent else False,
                        "street": f"{i} Main St",
                        "city": "Springfield",
                        "zip": f"{10000 + i}",
                        "country_id": rng.choice(countries),
                        "vat": False,
                        "active": i != partners - 1,
                    },
                    write_date=t,
                )
            )
        product_ids: list[int] = []
        for i in range(products):
            t += step
            product_ids.append(
                self.add(
                    "product.product",
                    {
                        "default_code": f"SKU-{i:04d}",
                        "name": f"Product {i}",
                        "barcode": False,
                        "list_price": float(rng.randint(5, 500)),
                        "standard_price": float(rng.randint(1, 5)),
                        "type": rng.choice(["consu", "service", "product"]),
                        "categ_id": [1, "All / Saleable"],
                    },
                    write_date=t,
                )
            )
        order_names: dict[int, str] = {}
        for i in range(orders):
            t += step
            partner = rng.choice(partner_ids)
            name = f"S{i + 1:05d}"
            total = float(rng.randint(100, 5000))
            oid = self.add(
                "sale.order",
                {
                    "name": name,
                    "partner_id": [partner, self.models["res.partner"][partner]["name"]],
                    "date_order": (t - timedelta(hours=1)).strftime(FMT),
                    "amount_untaxed": total,
                    "amount_tax": round(total * 0.2, 2),
                    "amount_total": round(total * 1.2, 2),
                    "currency_id": [1, "USD"],
                    "state": rng.choice(["draft", "sent", "sale"]),
                    "invoice_status": rng.choice(["no", "to invoice"]),
                    "client_order_ref": False,
                    "user_id": [2, "Mitchell Admin"],
                },
                write_date=t,
            )
            order_names[oid] = name
        for oid, name in order_names.items():
            for j in range(lines_per_order):
                t += step
                product = rng.choice(product_ids)
                qty, price = float(rng.randint(1, 10)), float(rng.randint(5, 200))
                self.add(
                    "sale.order.line",
                    {
                        "order_id": [oid, name],
                        "product_id": [product, self.models["product.product"][product]["name"]],
                        "name": f"Line {j} of {name}",
                        "product_uom_qty": qty,
                        "qty_delivered": 0.0,
                        "qty_invoiced": 0.0,
                        "price_unit": price,
                        "discount": 0.0,
                        "price_subtotal": qty * price,
                        "price_total": round(qty * price * 1.2, 2),
                    },
                    write_date=t,
                )
        for i in range(invoices):
            t += step
            partner = rng.choice(partner_ids)
            total = float(rng.randint(100, 5000))
            self.add(
                "account.move",
                {
                    "name": f"INV/2025/{i + 1:05d}",
                    "move_type": "out_invoice",
                    "state": "posted",
                    "payment_state": rng.choice(["not_paid", "paid", "partial"]),
                    "partner_id": [partner, self.models["res.partner"][partner]["name"]],
                    "invoice_date": (start + timedelta(days=i)).strftime("%Y-%m-%d"),
                    "invoice_date_due": (start + timedelta(days=i + 30)).strftime("%Y-%m-%d"),
                    "amount_untaxed": total,
                    "amount_tax": round(total * 0.2, 2),
                    "amount_total": round(total * 1.2, 2),
                    "amount_residual": 0.0,
                    "currency_id": [1, "USD"],
                    "invoice_origin": order_names.get(i + 1, False),
                },
                write_date=t,
            )
        t += step  # a journal entry that is not an invoice: the pull leaves it out
        self.add(
            "account.move",
            {"name": "MISC/2025/00001", "move_type": "entry", "state": "posted", "currency_id": [1, "USD"]},
            write_date=t,
        )

    # -- HTTP ----------------------------------------------------------------------------------------------
    def handle(self, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if req.path != "/jsonrpc" or req.method != "POST":
            return 404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>"
        body = req.body if isinstance(req.body, dict) else {}
        rid = body.get("id")
        params = body.get("params") or {}
        model, method = rpc_target(body)
        with self.lock:
            for i, (when, name, message) in enumerate(self._failures):
                if when(params):
                    del self._failures[i]
                    return 200, {}, rpc_error(rid, name, message)
            try:
                result = self._call(params)
            except _RpcFailure as exc:
                return 200, {}, rpc_error(rid, exc.name, exc.message)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
                # A malformed call the checks above missed: Odoo answers these as builtins.* errors too.
                # Never a dropped connection, which would look like commit_then_drop.
                return 200, {}, rpc_error(rid, f"builtins.{type(exc).__name__}", str(exc))
            drop = self._take_drop(model, method)
        if drop is not None:
            req.fault = f"committed, then {drop.mode}"
            if drop.mode == "drop":
                raise _DropConnection(f"{model}.{method}")
            self._stopping.wait(drop.delay)
        return 200, {}, {"jsonrpc": "2.0", "id": rid, "result": result}

    def _call(self, params: dict[str, Any]) -> Any:
        service, method, args = params.get("service"), params.get("method"), list(params.get("args") or [])
        if service == "common" and method == "version":
            return {
                "server_version": "17.0",
                "server_version_info": [17, 0, 0, "final", 0],
                "server_serie": "17.0",
                "protocol_version": 1,
            }
        if service == "common" and method in ("authenticate", "login"):
            db, login, password = (args + [None, None, None])[:3]
            ok = db == self.db and login == self.login and password == self.api_key
            return self.uid if ok else False
        if service == "object" and method == "execute_kw":
            db, uid, password, model, meth = (args + [None] * 5)[:5]
            call_args = args[5] if len(args) > 5 else []
            kwargs = args[6] if len(args) > 6 else {}
            if db != self.db or uid != self.uid or password != self.api_key:
                raise _RpcFailure("odoo.exceptions.AccessDenied", "Access Denied")
            return self._execute(str(model), str(meth), list(call_args), kwargs or {})
        raise _RpcFailure("builtins.Exception", f"unknown service/method {service}.{method}")

    def _execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if PRIVATE_METHOD.match(method):
            raise _RpcFailure(ACCESS_ERROR, f"Private methods (such as {method}) cannot be called remotely.")
        if model not in self.models:
            raise _RpcFailure(USER_ERROR, f"Object {model} doesn't exist")
        if method in ("search_read", "search", "search_count"):
            domain = args[0] if args else kwargs.get("domain", [])
            rows = self._search(model, domain, kwargs)
            if method == "search_count":
                return len(rows)
            if method == "search":
                return [r["id"] for r in rows]
            return [self._read(model, r, kwargs.get("fields")) for r in rows]
        if method == "read":
            ids = args[0] if args else []
            fields = args[1] if len(args) > 1 else kwargs.get("fields")
            return [self._read(model, self.models[model][i], fields) for i in ids if i in self.models[model]]
        if method == "create":
            vals = args[0] if args else kwargs.get("vals_list", {})
            if isinstance(vals, Mapping):
                return self._create_all(model, [vals])[0]
            if isinstance(vals, list) and all(isinstance(v, Mapping) for v in vals):
                return self._create_all(model, vals)
            raise _RpcFailure(
                "builtins.TypeError", f"create() expects a dict or a list of dicts, got {vals!r}"
            )
        if method == "write":
            ids, vals = (args + [[], {}])[:2]
            return self._write_all(model, self._browse(model, ids), vals)
        action = getattr(self, f"_{model.replace('.', '_')}_{method}", None)
        if action is not None:
            return action(self._browse(model, args[0] if args else []), kwargs)
        raise _RpcFailure(
            "builtins.AttributeError", f"The method '{method}' does not exist on the model '{model}'"
        )

    def _browse(self, model: str, ids: Any, *, gone: set[int] | None = None) -> list[dict[str, Any]]:
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        missing = [i for i in ids if i not in self.models[model] or (gone and i in gone)]
        if missing:
            raise _RpcFailure(
                MISSING,
                "Record does not exist or has been deleted.\n"
                f"(Record: {model}({', '.join(map(str, missing))},), User: {self.uid})",
            )
        return [self.models[model][i] for i in ids]

    def _search(self, model: str, domain: list[Any], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        context = kwargs.get("context") or {}
        rows = [
            r
            for r in self.models[model].values()
            if domain_matches(r, list(domain or []))
            and (context.get("active_test", True) is False or r.get("active", True) is not False)
        ]
        rows.sort(key=lambda r: r["id"])
        for term in reversed(
            [t.strip() for t in str(kwargs.get("order") or "id asc").split(",") if t.strip()]
        ):
            name, _, direction = term.partition(" ")
            if name not in self.MODEL_FIELDS[model] and name != "id":
                raise _RpcFailure("builtins.ValueError", f"Invalid field {name!r} in order")

            def key(r: dict[str, Any], n: str = name) -> tuple[bool, Any]:
                return r.get(n) is False, _value(r.get(n))

            rows.sort(key=key, reverse=direction.strip().lower() == "desc")
        offset = int(kwargs.get("offset") or 0)
        limit = kwargs.get("limit")
        return rows[offset : offset + int(limit)] if limit else rows[offset:]

    def _read(self, model: str, rec: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        names = list(fields) if fields else list(self.MODEL_FIELDS[model])
        for f in names:
            if f != "id" and f not in self.MODEL_FIELDS[model]:
                raise _RpcFailure("builtins.ValueError", f"Invalid field {f!r} on model {model!r}")
        # copies: the answer is serialised after the lock is released
        return {"id": rec["id"], **{f: _copy(rec[f]) for f in names if f != "id"}}

    # -- create / write (all or nothing per call: everything is checked before anything changes) -----------
    def _check_vals(
        self, model: str, vals: Mapping[str, Any], *, creating: bool, parent_field: str | None = None
    ) -> None:
        """Raise Odoo's error for ``vals``; ``parent_field``: the inverse many2one a ``[0, 0, vals]`` line gets
        from the record being created."""
        if not isinstance(vals, Mapping):
            raise _RpcFailure("builtins.TypeError", f"values for {model} must be a dict, not {vals!r}")
        for f in vals:
            if f not in self.MODEL_FIELDS[model] or f in ("id", "create_date", "write_date", "display_name"):
                raise _RpcFailure("builtins.ValueError", f"Invalid field {f!r} on model {model!r}")
        required = {f: (label, "not_null") for f, label in REQUIRED.get(model, {}).items()}
        required.update(self._required.get(model, {}))
        for f, (label, style) in required.items():
            if f == parent_field:
                continue
            if (creating and not vals.get(f)) or (
                not creating and f in vals and vals[f] in (False, None, "")
            ):
                text = missing_value_message if style == "missing_value" else not_null_message
                raise _RpcFailure(VALIDATION, text(model, f, label))
        if creating and model == "res.partner" and not vals.get("name"):
            raise _RpcFailure(VALIDATION, "The operation cannot be completed: Contacts require a name.")
        if (
            creating
            and model == "sale.order.line"
            and not vals.get("display_type")
            and not vals.get("product_id")
        ):
            raise _RpcFailure(
                VALIDATION,
                "The operation cannot be completed: Missing required fields on accountable sale order line.",
            )
        for f, comodel in MANY2ONE.get(model, {}).items():
            v = vals.get(f)
            if f != parent_field and v and comodel is not None:
                if not isinstance(v, int) or isinstance(v, bool) or v not in self.models[comodel]:
                    raise _RpcFailure(VALIDATION, foreign_key_message(model, f))
        for (parent, f), (comodel, inverse) in ONE2MANY.items():
            if parent != model or f not in vals:
                continue
            deleted: set[int] = set()  # commands apply in order: a line deleted earlier in the list is gone
            for command in vals[f] or []:
                if not isinstance(command, list | tuple) or len(command) < 1 or command[0] not in range(7):
                    raise _RpcFailure("builtins.ValueError", f"Invalid command {command!r} for {model}.{f}")
                code = command[0]
                if code == 0:
                    self._check_vals(comodel, command[2], creating=True, parent_field=inverse)
                elif code in (1, 2, 3, 4):
                    self._browse(comodel, [command[1]], gone=deleted)
                    if code == 1:
                        self._check_vals(comodel, command[2], creating=False)
                    if code == 2:
                        deleted.add(command[1])
                elif code == 6:
                    self._browse(comodel, command[2], gone=deleted)

    def _m2o(self, model: str, field: str, value: Any) -> Any:
        """A many2one as Odoo reads it back: ``[id, display name]`` or ``false``."""
        if not value:
            return False
        comodel = MANY2ONE.get(model, {}).get(field)
        if comodel is None or isinstance(value, list):
            return value if isinstance(value, list) else [value, f"{field},{value}"]
        return [value, self.models[comodel][value]["display_name"]]

    def _stored(self, model: str, vals: Mapping[str, Any]) -> dict[str, Any]:
        """Plain fields of ``vals`` in their stored form (many2one pairs); x2many and computed fields left out."""
        out: dict[str, Any] = {}
        for f, v in vals.items():
            if (model, f) in ONE2MANY or f in COMPUTED.get(model, ()):
                continue
            out[f] = self._m2o(model, f, v) if f in MANY2ONE.get(model, {}) else v
        return out

    def _create_all(self, model: str, vals_list: list[Mapping[str, Any]]) -> list[int]:
        for vals in vals_list:
            self._check_vals(model, vals, creating=True)
        return [self._create(model, vals) for vals in vals_list]

    def _create(self, model: str, vals: Mapping[str, Any]) -> int:
        values = self._defaults(model, vals)
        values.update(self._stored(model, vals))
        rid = self.add(model, values)
        self._apply_commands(model, rid, vals)
        self._recompute(model, rid)
        return rid

    def _defaults(self, model: str, vals: Mapping[str, Any]) -> dict[str, Any]:
        now = self.now()
        company = self.models["res.company"][1]
        if model == "sale.order":
            self._sequence[model] += 1
            return {
                "name": f"S{self._sequence[model]:05d}",
                "state": "draft",
                "date_order": now,
                "currency_id": list(company["currency_id"]),
                "company_id": [1, company["name"]],
                "user_id": [2, "Mitchell Admin"],
                "invoice_status": "no",
                "amount_untaxed": 0.0,
                "amount_tax": 0.0,
                "amount_total": 0.0,
            }
        if model == "sale.order.line":
            product = self.models["product.product"].get(vals.get("product_id") or 0)
            return {
                "name": product["name"] if product else False,
                "product_uom_qty": 1.0,
                "price_unit": float(product["list_price"] or 0.0) if product else 0.0,
                "discount": 0.0,
                "qty_delivered": 0.0,
                "qty_invoiced": 0.0,
            }
        if model == "res.partner":
            return {"active": True, "is_company": False, "company_id": False}
        if model == "product.product":
            return {"type": "consu", "active": True, "list_price": 1.0, "qty_available": 0.0}
        return {}

    def _write_all(self, model: str, recs: list[dict[str, Any]], vals: Mapping[str, Any]) -> bool:
        self._check_vals(model, vals, creating=False)
        if model == "sale.order":
            for rec in recs:
                self._check_order_edit(rec, vals)
        for rec in recs:
            rec.update(self._stored(model, vals), write_date=self.now())
            if "name" in vals and model not in ("sale.order",):
                rec["display_name"] = vals["name"] or rec["display_name"]
            self._apply_commands(model, rec["id"], vals)
            self._recompute(model, rec["id"])
            if model == "sale.order" and rec["state"] == "sale" and "order_line" in vals:
                self._sync_delivery(rec)
        return True

    def _check_order_edit(self, order: dict[str, Any], vals: Mapping[str, Any]) -> None:
        """A confirmed order keeps its lines (sale ``_unlink_except_confirmed``) and, once delivered or invoiced,
        their products (``write``, ``product_updatable``)."""
        if order["state"] != "sale" or not vals.get("order_line"):
            return
        lines = list(order["order_line"] or [])
        for command in vals["order_line"]:
            code = command[0]
            removed = (
                [command[1]]
                if code in (2, 3)
                else lines
                if code == 5
                else [i for i in lines if i not in command[2]]
                if code == 6
                else []
            )
            if any(not self.models["sale.order.line"][i]["display_type"] for i in removed):
                raise _RpcFailure(USER_ERROR, CONFIRMED_LINE_REMOVED)
            if code == 1 and "product_id" in command[2]:
                # product_updatable: false on a confirmed line once something was delivered or invoiced
                line = self.models["sale.order.line"][command[1]]
                moved = float(line["qty_delivered"] or 0) > 0 or float(line["qty_invoiced"] or 0) > 0
                if moved and command[2]["product_id"] != _value(line["product_id"]):
                    raise _RpcFailure(USER_ERROR, "You cannot modify the product of this order line.")

    def _apply_commands(self, model: str, rid: int, vals: Mapping[str, Any]) -> None:
        rec = self.models[model][rid]
        for (parent, f), (comodel, inverse) in ONE2MANY.items():
            if parent != model or f not in vals:
                continue
            children: list[int] = rec[f]
            for command in vals[f] or []:
                code = command[0]
                if code == 0:
                    self._create(comodel, {**command[2], inverse: rid})
                elif code == 1:
                    self._write_all(comodel, self._browse(comodel, [command[1]]), command[2])
                elif code in (2, 5, 6):  # delete one / all / all but the given ids (order lines cascade)
                    keep = set(command[2]) if code == 6 else set()
                    doomed = [command[1]] if code == 2 else [i for i in children if i not in keep]
                    self._unlink(comodel, doomed, children)
                    for i in sorted(keep - set(children)):
                        self._link(comodel, inverse, i, rec, children)
                elif code == 3:
                    self.models[comodel][command[1]][inverse] = False
                    if command[1] in children:
                        children.remove(command[1])
                elif code == 4:
                    self._link(comodel, inverse, command[1], rec, children)
            if model == "sale.order":
                for line in children:
                    self._recompute("sale.order.line", line)

    def _link(self, comodel: str, inverse: str, child: int, rec: dict[str, Any], children: list[int]) -> None:
        self.models[comodel][child][inverse] = [rec["id"], rec["display_name"]]
        if child not in children:
            children.append(child)

    def _unlink(self, model: str, ids: list[int], siblings: list[int]) -> None:
        # order lines are deleted with their order link (ondelete cascade on order_id)
        for i in ids:
            self.models[model].pop(i, None)
            if i in siblings:
                siblings.remove(i)

    def _recompute(self, model: str, rid: int) -> None:
        rec = self.models[model].get(rid)
        if rec is None:
            return
        if model == "sale.order.line":
            subtotal = float(rec["product_uom_qty"] or 0) * float(rec["price_unit"] or 0)
            subtotal *= 1 - float(rec["discount"] or 0) / 100
            rec["price_subtotal"] = rec["price_total"] = round(subtotal, 2)
            if (order := _value(rec["order_id"])) in self.models["sale.order"]:
                self._recompute("sale.order", order)
        elif model == "sale.order":
            # no taxes in the fake: total = untaxed
            lines = [self.models["sale.order.line"][i] for i in rec["order_line"] or []]
            untaxed = round(sum(float(line["price_subtotal"] or 0) for line in lines), 2)
            rec.update(amount_untaxed=untaxed, amount_tax=0.0, amount_total=untaxed)
            rec["display_name"] = rec["name"]

    # -- actions (``_<model>_<method>(records, kwargs)``) ------------------------------------------------------
    def _sale_order_action_confirm(self, orders: list[dict[str, Any]], kwargs: dict[str, Any]) -> bool:
        """draft/sent → sale, then the delivery (sale_stock ``_action_launch_stock_rule``)."""
        wrong = [o["name"] for o in orders if o["state"] not in ("draft", "sent")]
        if wrong:
            raise _RpcFailure(
                USER_ERROR,
                "The following orders are not in a state requiring confirmation: " + ", ".join(wrong),
            )
        for order in orders:
            order.update(state="sale", date_order=self.now(), write_date=self.now())
            self._launch_delivery(order)
        return True

    def _stockable(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        lines = [self.models["sale.order.line"][i] for i in order["order_line"] or []]
        return [
            line
            for line in lines
            if (p := self.models["product.product"].get(_value(line["product_id"])))
            and p["type"] in ("consu", "product")
        ]

    def _launch_delivery(self, order: dict[str, Any]) -> None:
        """One outgoing picking, one move per consumable or storable line (services get none)."""
        stockable = self._stockable(order)
        if not stockable:
            return  # services only: no delivery (delivery_status stays false)
        picking = self._new_picking(order)
        for line in stockable:
            self._new_move(picking, line)
        order["delivery_status"] = "pending"

    def _new_picking(self, order: dict[str, Any]) -> dict[str, Any]:
        self._sequence["stock.picking"] += 1
        pid = self.add(
            "stock.picking",
            {
                "name": f"WH/OUT/{self._sequence['stock.picking']:05d}",
                "origin": order["name"],
                "sale_id": [order["id"], order["name"]],
                "partner_id": order["partner_id"],
                "company_id": order["company_id"],
                "picking_type_code": "outgoing",
                "move_type": "direct",
                "state": "confirmed",
                "scheduled_date": self.now(),
            },
        )
        return self.models["stock.picking"][pid]

    def _new_move(self, picking: dict[str, Any], line: dict[str, Any]) -> None:
        self.add(
            "stock.move",
            {
                "name": line["name"],
                "picking_id": [picking["id"], picking["name"]],
                "product_id": line["product_id"],
                "sale_line_id": [line["id"], line["name"]],
                "product_uom_qty": float(line["product_uom_qty"] or 0),
                "quantity": 0.0,
                "state": "confirmed",
            },
        )

    def _sync_delivery(self, order: dict[str, Any]) -> None:
        """Lines changed on a confirmed order: the open moves follow the ordered quantities (sale_stock)."""
        open_pickings = [
            self.models["stock.picking"][p]
            for p in order["picking_ids"] or []
            if self.models["stock.picking"][p]["state"] not in ("done", "cancel")
        ]
        moves = [
            m
            for m in self.models["stock.move"].values()
            if m["state"] not in ("done", "cancel")
            and _value(m["picking_id"]) in {p["id"] for p in open_pickings}
        ]
        for line in self._stockable(order):
            mine = [m for m in moves if _value(m["sale_line_id"]) == line["id"]]
            qty = float(line["product_uom_qty"] or 0)
            if not mine:
                if qty > 0:
                    if not open_pickings:
                        open_pickings.append(self._new_picking(order))
                    self._new_move(open_pickings[0], line)
                continue
            move = mine[0]
            move["product_uom_qty"] = qty
            if float(move["quantity"] or 0) > qty:
                surplus = float(move["quantity"]) - qty
                product = _value(move["product_id"])
                self.reserved[product] = max(0.0, self.reserved.get(product, 0.0) - surplus)
                move["quantity"] = qty
            self._move_state(move)
        for picking in open_pickings:
            self._picking_state(picking)

    def _move_state(self, move: dict[str, Any]) -> None:
        done, want = float(move["quantity"] or 0), float(move["product_uom_qty"] or 0)
        move["state"] = "assigned" if done >= want else ("partially_available" if done > 0 else "confirmed")

    def _picking_state(self, picking: dict[str, Any]) -> None:
        states = {self.models["stock.move"][m]["state"] for m in picking["move_ids"] or []} - {"cancel"}
        if states and states <= {"assigned"}:
            picking["state"] = "assigned"
        elif states & {"assigned", "partially_available"} and picking["move_type"] == "direct":
            picking["state"] = "assigned"  # "as soon as possible": ready once anything is reserved
        else:
            picking["state"] = "confirmed"
        picking["write_date"] = self.now()

    def _sale_order_action_cancel(self, orders: list[dict[str, Any]], kwargs: dict[str, Any]) -> Any:
        """Without ``disable_cancel_warning`` a confirmed order opens the cancel wizard instead (§2.6)."""
        context = kwargs.get("context") or {}
        if not context.get("disable_cancel_warning") and any(o["state"] != "draft" for o in orders):
            return {
                "name": "Cancel Sales Order",
                "type": "ir.actions.act_window",
                "res_model": "sale.order.cancel",
                "view_mode": "form",
                "target": "new",
                "context": {"default_order_id": orders[0]["id"]},
            }
        for order in orders:
            self._cancel(order)
        return True

    def _cancel(self, order: dict[str, Any]) -> None:
        order.update(state="cancel", write_date=self.now())
        for pid in order["picking_ids"] or []:
            picking = self.models["stock.picking"][pid]
            if picking["state"] == "done":
                continue
            for mid in picking["move_ids"] or []:
                move = self.models["stock.move"][mid]
                self._release(move)
                move["state"] = "cancel"
            picking.update(state="cancel", write_date=self.now())

    def _release(self, move: dict[str, Any]) -> None:
        product = _value(move["product_id"])
        self.reserved[product] = max(0.0, self.reserved.get(product, 0.0) - float(move["quantity"] or 0))
        move["quantity"] = 0.0

    def _stock_picking_action_assign(self, pickings: list[dict[str, Any]], kwargs: dict[str, Any]) -> bool:
        """Reserve what is free of each product: storable from ``qty_available``, consumable in full."""
        moves = [
            self.models["stock.move"][m]
            for p in pickings
            for m in p["move_ids"] or []
            if self.models["stock.move"][m]["state"] not in ("draft", "cancel", "done")
        ]
        if not moves:
            raise _RpcFailure(USER_ERROR, "Nothing to check the availability for.")
        for move in moves:
            if move["state"] == "assigned":
                continue
            product = self.models["product.product"][_value(move["product_id"])]
            need = float(move["product_uom_qty"]) - float(move["quantity"] or 0)
            if product["type"] == "product":
                free = float(product["qty_available"] or 0) - self.reserved.get(product["id"], 0.0)
                take = max(0.0, min(need, free))
            else:
                take = need
            if product["type"] == "product":
                self.reserved[product["id"]] = self.reserved.get(product["id"], 0.0) + take
            move["quantity"] = float(move["quantity"] or 0) + take
            self._move_state(move)
        for picking in pickings:
            self._picking_state(picking)
        return True


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def session_expired_fault() -> Fault:
    """HTTP 200 with code 100, as Odoo answers a call on an expired session (``id`` left null)."""
    return Fault(
        200, rpc_error(None, "odoo.http.SessionExpiredException", "Session expired"), label="session expired"
    )
