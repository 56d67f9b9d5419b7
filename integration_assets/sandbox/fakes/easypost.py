"""A local EasyPost API v2 that speaks the documented wire format (docs/SOURCES.md §4), for tests and demos.

Endpoints: ``POST /v2/addresses`` (``verify_strict``: 201 Address with ``verifications``, or 422
``ADDRESS.VERIFY.FAILURE`` with field errors), ``POST /v2/shipments`` (201 Shipment with ``rates`` from several
carriers at deterministic prices, or ``rates: []`` with carrier ``messages``), ``GET /v2/shipments`` (newest
first, ``page_size`` ≤ 100, ``before_id``/``after_id``, ``start_datetime``/``end_datetime``, ``purchased``,
``has_more``), ``GET /v2/shipments/{id}``, ``POST /v2/shipments/{id}/buy`` (``{"rate": {"id"}}``: tracking code,
``postage_label``, ``selected_rate``, ``tracker``, ``fees``; a second buy is 422 ``SHIPMENT.POSTAGE.EXISTS``),
``POST /v2/shipments/{id}/rerate``, ``POST /v2/shipments/{id}/refund`` (``refund_status: submitted``). Auth:
``Bearer <key>`` or Basic with the key as user; 401 otherwise. Errors use EasyPost's envelope
``{"error": {"code", "message", "errors": [{"field", "message", "suggestion"}]}}``.

Fault knobs (thread safe; the server answers concurrent calls): :meth:`FakeEasyPost.down` / :meth:`up` (every
request 503, at once or after a hold: an outage), :meth:`rate_limit` (429 with ``Retry-After``), :meth:`fail_next` (5xx), :meth:`slow`
(a delay), :meth:`commit_then_drop` (perform the create/buy/refund, then never answer: the client times out),
:meth:`reject_address` (the carrier rejects an address: verification fails and no carrier rates it),
:meth:`no_rates`. Counters: :attr:`shipments_created`, :meth:`labels_bought` per reference,
:attr:`refunds` per shipment.
"""

from __future__ import annotations

import base64
import fnmatch
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest

__all__ = ["CARRIER_SERVICES", "FakeEasyPost"]

# (carrier, service, base price, per-ounce price, delivery days): rates are base + weight * per-ounce.
CARRIER_SERVICES: tuple[tuple[str, str, str, str, int], ...] = (
    ("USPS", "GroundAdvantage", "5.40", "0.05", 4),
    ("USPS", "Priority", "7.90", "0.08", 2),
    ("USPS", "Express", "26.35", "0.15", 1),
    ("UPS", "Ground", "9.10", "0.06", 4),
    ("UPS", "NextDayAir", "31.20", "0.20", 1),
    ("FedEx", "FEDEX_GROUND", "8.95", "0.06", 5),
)
MAX_PAGE_SIZE = 100
REQUIRED_ADDRESS = ("street1", "city", "zip", "country")

Answer = tuple[int, dict[str, str], Any]


def ep_time(ts: float) -> str:
    """EasyPost's shipment timestamp form: ISO-8601 UTC, whole seconds, ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> float | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def error(status: int, code: str, message: str, errors: list[Any] | None = None) -> Answer:
    """An answer in EasyPost's error envelope (docs/SOURCES.md §4.4)."""
    return status, {}, {"error": {"code": code, "message": message, "errors": errors or []}}


def field_error(field: str, message: str, code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"field": field, "message": message, "suggestion": None}
    if code:
        out["code"] = code
    return out


@dataclass
class _Drop:
    pattern: str  # fnmatch pattern over the path, POST only
    times: int


class FakeEasyPost(FakeServer):
    """An EasyPost account in memory. Ids are deterministic (``shp_`` + 32 hex digits from a counter)."""

    def __init__(
        self,
        *,
        api_key: str = "EZTK-fake-easypost-key",
        clock: Callable[[], float] = time.time,
        drop_hold: float = 30.0,
        mode: str = "test",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.clock = clock
        self.mode = mode
        self.drop_hold = drop_hold  # how long a dropped answer is held back (longer than any client timeout)
        self.shipments: dict[str, dict[str, Any]] = {}
        self.addresses: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []  # shipment ids, oldest first
        self._created: list[float] = []  # their created_at (whole seconds), same order
        self._pos: dict[str, int] = {}  # shipment id -> index in _order
        self._seq = 0
        # counters tests read
        self.shipments_created = 0
        self.buys = Counter[str]()  # successful buys per reference (a label each)
        self.refunds = Counter[str]()  # refunds submitted per shipment id
        self.verifications = 0
        # fault knobs
        self._down: Fault | None = None
        self._queued: list[
            tuple[str | None, str | None, Fault]
        ] = []  # (path pattern, method, fault), once each
        self._slow: list[tuple[str | None, float]] = []
        self._drops: list[_Drop] = []
        self._rejected: list[Callable[[dict[str, Any]], bool]] = []
        self._no_rates = False
        self.fault = self._fault

    # -- knobs ------------------------------------------------------------------------------------------
    def down(self, *, retry_after: float | None = None, hang: bool = False) -> None:
        """An outage until :meth:`up`: every request answers 503 at once, or with ``hang`` only after
        ``drop_hold`` seconds (a black hole: the client times out first)."""
        with self.lock:
            self._down = Fault(
                503,
                {"error": {"code": "SERVICE.UNAVAILABLE", "message": "Service Unavailable", "errors": []}},
                retry_after=retry_after,
                delay=self.drop_hold if hang else 0.0,
                label="down (hang)" if hang else "503 down",
            )

    def up(self) -> None:
        with self.lock:
            self._down = None

    def rate_limit(
        self,
        times: int = 1,
        *,
        retry_after: float | None = 1,
        path: str | None = None,
        method: str | None = None,
    ) -> None:
        """The next ``times`` requests (matching ``path``, an fnmatch pattern, and ``method``) answer 429 with
        ``Retry-After`` (whole seconds; None: no header)."""
        body = {"error": {"code": "RATE_LIMITED", "message": "Too many requests", "errors": []}}
        with self.lock:
            self._queued += [(path, method, Fault(429, body, retry_after=retry_after, label="429"))] * times

    def fail_next(
        self, status: int = 500, times: int = 1, *, path: str | None = None, method: str | None = None
    ) -> None:
        """The next ``times`` requests (matching ``path`` and ``method``) answer ``status`` without doing
        anything."""
        body = {"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal Server Error", "errors": []}}
        with self.lock:
            self._queued += [(path, method, Fault(status, body, label=f"{status}"))] * times

    def slow(self, seconds: float, *, path: str | None = None) -> None:
        """Every request (matching ``path``) is answered ``seconds`` late; 0 clears it."""
        with self.lock:
            self._slow = [(p, s) for p, s in self._slow if p != path]
            if seconds > 0:
                self._slow.append((path, seconds))

    def commit_then_drop(self, path: str = "/v2/shipments", times: int = 1) -> None:
        """The next ``times`` POSTs to ``path`` (fnmatch: ``/v2/shipments/*/buy``) are performed, then never
        answered: the answer is held back ``drop_hold`` seconds, so the client times out."""
        with self.lock:
            self._drops.append(_Drop(path, times))

    def reject_address(self, match: str | Callable[[dict[str, Any]], bool]) -> None:
        """Addresses the carrier rejects: a zip (exact) or a predicate over the address dict. Verification
        fails with 422 ``ADDRESS.VERIFY.FAILURE`` and a shipment to it gets no rates."""
        with self.lock:
            if callable(match):
                self._rejected.append(match)
            else:
                zip_code = str(match)
                self._rejected.append(lambda a: str(a.get("zip") or "") == zip_code)

    def no_rates(self, on: bool = True) -> None:
        """New shipments get no rates (every carrier fails to rate them)."""
        with self.lock:
            self._no_rates = on

    def reset_faults(self) -> None:
        with self.lock:
            self._down = None
            self._queued.clear()
            self._slow.clear()
            self._drops.clear()
            self._rejected.clear()
            self._no_rates = False

    # -- what tests read --------------------------------------------------------------------------------
    def labels_bought(self, reference: str | None = None) -> int:
        """Labels bought for ``reference`` (all labels when None)."""
        with self.lock:
            return self.buys[reference] if reference is not None else sum(self.buys.values())

    def shipments_with_reference(self, reference: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.shipments.values() if s.get("reference") == reference]

    def duplicates(self) -> dict[str, int]:
        """References with more than one shipment or more than one label (should always be empty)."""
        with self.lock:
            per_ref = Counter(str(s.get("reference")) for s in self.shipments.values())
            out = {r: n for r, n in per_ref.items() if n > 1}
            out.update({r: n for r, n in self.buys.items() if n > 1})
            return out

    # -- fault dispatch (before the normal answer) -------------------------------------------------------
    def _fault(self, req: LoggedRequest) -> Fault | None:
        with self.lock:
            delay = sum(s for p, s in self._slow if p is None or fnmatch.fnmatchcase(req.path, p))
            if self._down is not None:
                return replace(self._down, delay=self._down.delay + delay)
            for i, (pattern, method, fault) in enumerate(self._queued):
                if (pattern is None or fnmatch.fnmatchcase(req.path, pattern)) and method in (
                    None,
                    req.method,
                ):
                    del self._queued[i]
                    return Fault(
                        fault.status,
                        fault.body,
                        dict(fault.headers),
                        retry_after=fault.retry_after,
                        delay=delay,
                        label=fault.label,
                    )
        return Fault(delay=delay) if delay else None

    def _take_drop(self, req: LoggedRequest) -> bool:
        if req.method != "POST":
            return False
        with self.lock:
            for d in self._drops:
                if d.times > 0 and fnmatch.fnmatchcase(req.path, d.pattern):
                    d.times -= 1
                    if d.times == 0:
                        self._drops.remove(d)
                    return True
        return False

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _authorized(self, req: LoggedRequest) -> bool:
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        if auth == f"Bearer {self.api_key}":
            return True
        if auth.startswith("Basic "):
            try:
                user = base64.b64decode(auth[6:]).decode("utf-8").split(":", 1)[0]
            except ValueError:
                return False
            return user == self.api_key
        return False

    def handle(self, req: LoggedRequest) -> Answer:
        if not self._authorized(req):
            return error(401, "APIKEY.REQUIRED", "Authentication failed: a valid API key is required.")
        answer = self._route(req)
        if answer[0] < 300 and self._take_drop(req):
            # The work is done and committed; the answer never comes (the client gives up first).
            req.fault = "commit_then_drop"
            self._stopping.wait(self.drop_hold)
        return answer

    def _route(self, req: LoggedRequest) -> Answer:
        parts = [p for p in req.path.split("/") if p]
        if not parts or parts[0] != "v2":
            return error(404, "NOT_FOUND", "The requested resource could not be found.")
        body = req.body if isinstance(req.body, dict) else {}
        with self.lock:
            if parts[1:] == ["addresses"] and req.method == "POST":
                return self._verify(body)
            if parts[1:] == ["shipments"] and req.method == "POST":
                return self._create(body)
            if parts[1:] == ["shipments"] and req.method == "GET":
                return self._list(req.query)
            if len(parts) >= 3 and parts[1] == "shipments":
                shipment = self.shipments.get(parts[2])
                if shipment is None:
                    return error(404, "NOT_FOUND", "The requested resource could not be found.")
                if len(parts) == 3 and req.method == "GET":
                    return 200, {}, shipment
                if len(parts) == 4 and req.method == "POST":
                    action = {"buy": self._buy, "refund": self._refund, "rerate": self._rerate}.get(parts[3])
                    if action is not None:
                        return action(shipment, body)
        return error(404, "NOT_FOUND", f"No route for {req.method} {req.path}.")

    # -- objects ------------------------------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._seq:032x}"

    def _is_rejected(self, address: dict[str, Any]) -> bool:
        return any(p(address) for p in self._rejected)

    def _address(self, raw: Any, *, field: str) -> tuple[dict[str, Any] | None, Answer | None]:
        if not isinstance(raw, dict):
            return None, error(
                422,
                "PARAMETER.REQUIRED",
                "Missing required parameter.",
                [field_error(field, "cannot be blank")],
            )
        missing = [f for f in REQUIRED_ADDRESS if not raw.get(f)]
        if missing:
            return None, error(
                422,
                "ADDRESS.PARAMETERS.INVALID",
                "Invalid address parameters.",
                [
                    field_error(f"{field}.{m}" if field != "address" else m, "cannot be blank")
                    for m in missing
                ],
            )
        now = ep_time(self.clock())
        addr = {
            "id": self._id("adr"),
            "object": "Address",
            "mode": self.mode,
            "created_at": now,
            "updated_at": now,
            **{k: raw.get(k) for k in ("name", "company", "street1", "street2", "city", "state", "zip")},
            "country": str(raw.get("country") or "").upper(),
            "phone": raw.get("phone"),
            "email": raw.get("email"),
            "residential": None,
            "verifications": {},
        }
        return addr, None

    def _verify(self, body: dict[str, Any]) -> Answer:
        self.verifications += 1
        addr, problem = self._address(body.get("address"), field="address")
        if problem is not None:
            return problem
        assert addr is not None
        strict = "verify_strict" in body  # its mere presence turns it on (docs/SOURCES.md §4.5)
        verify = strict or "verify" in body
        if verify and self._is_rejected(addr):
            errors = [
                field_error("address", "Address not found", "E.ADDRESS.NOT_FOUND"),
                field_error("street1", "House number is missing", "E.HOUSE_NUMBER.MISSING"),
            ]
            if strict:
                return error(422, "ADDRESS.VERIFY.FAILURE", "Unable to verify address.", errors)
            addr["verifications"] = {"delivery": {"success": False, "errors": errors, "details": None}}
        elif verify:
            addr["verifications"] = {
                "delivery": {
                    "success": True,
                    "errors": [],
                    "details": {"latitude": 37.7, "longitude": -122.4, "time_zone": "America/Los_Angeles"},
                }
            }
        self.addresses[addr["id"]] = addr
        return 201, {}, addr

    def _rates(
        self, shipment_id: str, parcel: dict[str, Any], to_address: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if self._no_rates or self._is_rejected(to_address):
            return []
        weight = Decimal(str(parcel.get("weight") or 0))
        now = ep_time(self.clock())
        rates = []
        for carrier, service, base, per_oz, days in CARRIER_SERVICES:
            price = (Decimal(base) + weight * Decimal(per_oz)).quantize(Decimal("0.01"))
            rates.append(
                {
                    "id": self._id("rate"),
                    "object": "Rate",
                    "created_at": now,
                    "updated_at": now,
                    "mode": self.mode,
                    "service": service,
                    "carrier": carrier,
                    "rate": str(price),
                    "currency": "USD",
                    "retail_rate": str((price * Decimal("1.3")).quantize(Decimal("0.01"))),
                    "retail_currency": "USD",
                    "list_rate": str((price * Decimal("1.1")).quantize(Decimal("0.01"))),
                    "list_currency": "USD",
                    "delivery_days": days,
                    "delivery_date": None,
                    "delivery_date_guaranteed": False,
                    "est_delivery_days": days,
                    "shipment_id": shipment_id,
                    "carrier_account_id": f"ca_{carrier.lower():0<32}"[:35],
                }
            )
        return rates

    def _rate_messages(self) -> list[dict[str, Any]]:
        return [
            {
                "carrier": carrier,
                "carrier_account_id": f"ca_{carrier.lower():0<32}"[:35],
                "type": "rate_error",
                "message": "Unable to retrieve rates for this shipment.",
            }
            for carrier in sorted({c for c, *_ in CARRIER_SERVICES})
        ]

    def _create(self, body: dict[str, Any]) -> Answer:
        raw = body.get("shipment")
        if not isinstance(raw, dict):
            return error(
                422,
                "PARAMETER.REQUIRED",
                "Missing required parameter.",
                [field_error("shipment", "cannot be blank")],
            )
        to_addr, problem = self._address(raw.get("to_address"), field="to_address")
        if problem is not None:
            return problem
        from_addr, problem = self._address(raw.get("from_address"), field="from_address")
        if problem is not None:
            return problem
        parcel = raw.get("parcel")
        if not isinstance(parcel, dict) or not parcel.get("weight"):
            return error(
                422,
                "PARCEL.PARAMETERS.INVALID",
                "Invalid parcel parameters.",
                [field_error("parcel.weight", "cannot be blank")],
            )
        assert to_addr is not None and from_addr is not None
        shipment_id = self._id("shp")
        now = ep_time(self.clock())
        rates = self._rates(shipment_id, parcel, to_addr)
        shipment = {
            "id": shipment_id,
            "object": "Shipment",
            "mode": self.mode,
            "created_at": now,
            "updated_at": now,
            "reference": raw.get("reference"),
            "status": "unknown",
            "tracking_code": None,
            "to_address": to_addr,
            "from_address": from_addr,
            "return_address": from_addr,
            "buyer_address": to_addr,
            "parcel": {
                "id": self._id("prcl"),
                "object": "Parcel",
                **{k: parcel.get(k) for k in ("length", "width", "height", "weight")},
            },
            "options": dict(raw.get("options") or {}),
            "rates": rates,
            "messages": [] if rates else self._rate_messages(),
            "selected_rate": None,
            "postage_label": None,
            "tracker": None,
            "fees": [],
            "refund_status": None,
            "is_return": bool(raw.get("is_return")),
        }
        self.shipments[shipment_id] = shipment
        self._pos[shipment_id] = len(self._order)
        self._order.append(shipment_id)
        self._created.append(_parse(now) or 0.0)
        self.shipments_created += 1
        return 201, {}, shipment

    def _list(self, query: dict[str, list[str]]) -> Answer:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        try:
            page_size = int(one("page_size") or 20)
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            return error(
                422,
                "PARAMETER.INVALID",
                "Invalid parameter.",
                [field_error("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")],
            )
        # Walk newest first from before_id (exclusive) down to after_id (exclusive), a page and one more: a
        # page costs its size, not the account's size. Creation times never decrease along _order (the clock
        # does not go back), so the walk stops at the first shipment older than start_datetime.
        before_id, after_id = one("before_id"), one("after_id")
        hi = self._pos.get(before_id, -1) - 1 if before_id else len(self._order) - 1
        lo = self._pos.get(after_id, len(self._order)) + 1 if after_id else 0
        start, end = _parse(one("start_datetime")), _parse(one("end_datetime"))
        purchased = one("purchased")
        selected: list[dict[str, Any]] = []
        for i in range(hi, lo - 1, -1):
            created = self._created[i]
            if start is not None and created < start:
                break
            if end is not None and created > end:
                continue
            s = self.shipments[self._order[i]]
            if purchased is not None and (purchased == "true") != (s["postage_label"] is not None):
                continue
            selected.append(s)
            if len(selected) > page_size:
                break
        page = selected[:page_size]
        return 200, {}, {"shipments": page, "has_more": len(selected) > page_size}

    def _buy(self, shipment: dict[str, Any], body: dict[str, Any]) -> Answer:
        if shipment["postage_label"] is not None:
            return error(422, "SHIPMENT.POSTAGE.EXISTS", "Postage already exists for this shipment.")
        rate_ref = body.get("rate")
        rate_id = rate_ref.get("id") if isinstance(rate_ref, dict) else None
        rate = next((r for r in shipment["rates"] if r["id"] == rate_id), None)
        if rate is None:
            return error(
                422,
                "SHIPMENT.RATE.NOT_FOUND" if rate_id else "PARAMETER.REQUIRED",
                "The rate is not one of this shipment's rates." if rate_id else "Missing required parameter.",
                [field_error("rate", "is invalid" if rate_id else "cannot be blank")],
            )
        now = ep_time(self.clock())
        n = int(shipment["id"][4:], 16)
        tracking = f"EZ{n:018d}"
        shipment.update(
            status="unknown",
            updated_at=now,
            tracking_code=tracking,
            selected_rate=rate,
            postage_label={
                "object": "PostageLabel",
                "id": self._id("pl"),
                "created_at": now,
                "updated_at": now,
                "date_advance": 0,
                "label_date": now,
                "label_resolution": 300,
                "label_size": "4x6",
                "label_type": "default",
                "label_file_type": "image/png",
                "label_url": f"{self.url}/files/postage_label/{shipment['id']}.png",
                "label_pdf_url": None,
                "label_zpl_url": None,
            },
            tracker={
                "id": self._id("trk"),
                "object": "Tracker",
                "mode": self.mode,
                "tracking_code": tracking,
                "status": "pre_transit",
                "carrier": rate["carrier"],
                "shipment_id": shipment["id"],
                "public_url": f"{self.url}/track/{tracking}",
                "created_at": now,
                "updated_at": now,
            },
            fees=[
                {
                    "object": "Fee",
                    "type": "LabelFee",
                    "amount": "0.00000",
                    "charged": True,
                    "refunded": False,
                },
                {
                    "object": "Fee",
                    "type": "PostageFee",
                    "amount": f"{Decimal(rate['rate']):.5f}",
                    "charged": True,
                    "refunded": False,
                },
            ],
        )
        self.buys[str(shipment.get("reference"))] += 1
        return 200, {}, shipment

    def _rerate(self, shipment: dict[str, Any], body: dict[str, Any]) -> Answer:
        rates = self._rates(shipment["id"], shipment["parcel"], shipment["to_address"])
        shipment["rates"] = rates
        shipment["messages"] = [] if rates else self._rate_messages()
        return 200, {}, {"rates": rates}

    def _refund(self, shipment: dict[str, Any], body: dict[str, Any]) -> Answer:
        if shipment["postage_label"] is None:
            return error(422, "SHIPMENT.REFUND.UNAVAILABLE", "A shipment without postage cannot be refunded.")
        if shipment["refund_status"] in ("submitted", "refunded"):
            return error(
                422, "SHIPMENT.REFUND.FAILURE", "A refund has already been submitted for this shipment."
            )
        shipment.update(refund_status="submitted", updated_at=ep_time(self.clock()))
        self.refunds[shipment["id"]] += 1
        return 200, {}, shipment
