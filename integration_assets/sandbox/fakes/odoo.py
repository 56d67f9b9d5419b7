"""A local Odoo 17 ``/jsonrpc`` endpoint that speaks the documented wire format (docs/SOURCES.md §2).

``common.version``, ``common.authenticate`` / ``common.login`` (``false`` for a bad login, not an error),
``object.execute_kw`` with ``search_read``, ``search``, ``search_count`` and ``read``: domains in Odoo's prefix
notation (``&``, ``|``, ``!``; ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``, ``like``,
``ilike``), ``order``, ``offset``/``limit``, ``context.active_test`` (archived records hidden unless false).
Values as Odoo sends them: many2one ``[id, "name"]``, ``false`` for empty, datetimes ``YYYY-MM-DD HH:MM:SS`` UTC.

Errors as Odoo sends them: HTTP 200 with a JSON-RPC ``error`` member ``{code, message, data: {name, debug,
message, arguments, context}}`` (:func:`rpc_error`); a wrong key in ``execute_kw`` is
``odoo.exceptions.AccessDenied``. Tests add faults with :meth:`FakeOdoo.fail_next` or ``fault``/``latency``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest

__all__ = ["FakeOdoo", "rpc_error"]

FMT = "%Y-%m-%d %H:%M:%S"
ERROR_CODES = {"odoo.http.SessionExpiredException": 100}
ERROR_MESSAGES = {100: "Odoo Session Expired"}


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


class FakeOdoo(FakeServer):
    """An Odoo database in memory: ``models[model][id] = record`` with Odoo wire values."""

    MODEL_FIELDS: dict[str, tuple[str, ...]] = {
        "res.partner": (
            "name",
            "email",
            "phone",
            "mobile",
            "is_company",
            "parent_id",
            "street",
            "city",
            "zip",
            "country_id",
            "vat",
            "active",
            "display_name",
            "create_date",
            "write_date",
        ),
        "product.product": (
            "default_code",
            "name",
            "barcode",
            "list_price",
            "standard_price",
            "type",
            "categ_id",
            "active",
            "display_name",
            "create_date",
            "write_date",
        ),
        "sale.order": (
            "name",
            "partner_id",
            "date_order",
            "amount_untaxed",
            "amount_tax",
            "amount_total",
            "currency_id",
            "state",
            "invoice_status",
            "client_order_ref",
            "user_id",
            "order_line",
            "display_name",
            "create_date",
            "write_date",
        ),
        "sale.order.line": (
            "order_id",
            "product_id",
            "name",
            "product_uom_qty",
            "qty_delivered",
            "qty_invoiced",
            "price_unit",
            "discount",
            "price_subtotal",
            "price_total",
            "display_name",
            "create_date",
            "write_date",
        ),
        "account.move": (
            "name",
            "move_type",
            "state",
            "payment_state",
            "partner_id",
            "invoice_date",
            "invoice_date_due",
            "amount_untaxed",
            "amount_tax",
            "amount_total",
            "amount_residual",
            "currency_id",
            "invoice_origin",
            "display_name",
            "create_date",
            "write_date",
        ),
    }

    def __init__(
        self,
        *,
        db: str = "odoo",
        login: str = "bot@example.com",
        api_key: str = "fake-odoo-api-key",
        uid: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.db, self.login, self.api_key, self.uid = db, login, api_key, uid
        self.clock = clock
        self.models: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in self.MODEL_FIELDS}
        self._failures: list[tuple[Callable[[dict[str, Any]], bool], str, str]] = []

    # -- data ----------------------------------------------------------------------------------------------
    def now(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime(FMT)

    def add(self, model: str, values: dict[str, Any], *, write_date: datetime | str | None = None) -> int:
        with self.lock:
            rid = max(self.models[model], default=0) + 1
            wd = write_date.strftime(FMT) if isinstance(write_date, datetime) else (write_date or self.now())
            rec: dict[str, Any] = {f: False for f in self.MODEL_FIELDS[model]}
            rec.update(values)
            rec.update(id=rid, write_date=wd, create_date=rec.get("create_date") or wd)
            rec["display_name"] = rec.get("display_name") or rec.get("name") or f"{model},{rid}"
            if "active" in rec and values.get("active") is None:
                rec["active"] = True
            self.models[model][rid] = rec
            return rid

    def touch(self, model: str, ids: Iterable[int], *, at: datetime | None = None, **values: Any) -> None:
        """Write ``values`` to records; their write_date becomes ``at`` (default: now)."""
        with self.lock:
            wd = at.strftime(FMT) if at else self.now()
            for rid in ids:
                self.models[model][rid].update(values, write_date=wd)

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

    # -- HTTP ----------------------------------------------------------------------------------------------
    def handle(self, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if req.path != "/jsonrpc" or req.method != "POST":
            return 404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>"
        body = req.body if isinstance(req.body, dict) else {}
        rid = body.get("id")
        params = body.get("params") or {}
        with self.lock:
            for i, (when, name, message) in enumerate(self._failures):
                if when(params):
                    del self._failures[i]
                    return 200, {}, rpc_error(rid, name, message)
            try:
                result = self._call(params)
            except _RpcFailure as exc:
                return 200, {}, rpc_error(rid, exc.name, exc.message)
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
            return self._execute(str(model), str(meth), call_args, kwargs or {})
        raise _RpcFailure("builtins.Exception", f"unknown service/method {service}.{method}")

    def _execute(self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if model not in self.models:
            raise _RpcFailure("builtins.KeyError", repr(model))
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
        raise _RpcFailure(
            "builtins.AttributeError", f"The method '{method}' does not exist on the model '{model}'"
        )

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
        return {"id": rec["id"], **{f: rec[f] for f in names if f != "id"}}


def session_expired_fault() -> Fault:
    """HTTP 200 with code 100, as Odoo answers a call on an expired session (``id`` left null)."""
    return Fault(
        200, rpc_error(None, "odoo.http.SessionExpiredException", "Session expired"), label="session expired"
    )
