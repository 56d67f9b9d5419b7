"""A local HubSpot CRM v3 that speaks the documented wire format (docs/SOURCES.md §1), for tests and demos.

Endpoints: ``GET /crm/v3/objects/{type}`` (limit ≤ 100, opaque ``after``, ``properties``, ``associations``,
no ``paging`` on the last page), ``POST /crm/v3/objects/{type}/search`` (filterGroups ORed, filters ANDed,
one sort, limit ≤ 200, ``after`` an offset, 400 past ``search_cap`` results, ``total``), and
``POST /crm/v3/associations/{from}/{to}/batch/read`` (207 when some ids have none). Bearer auth (401 with the
error body otherwise), ``X-HubSpot-RateLimit-*`` headers on every answer, property values as strings,
requested-but-empty properties as ``null``, unknown requested properties omitted.

The outbound write side (docs/SOURCES.md §1.4, §1.7, §1.8): ``GET`` and ``PATCH /crm/v3/objects/deals/{id}``
(the PATCH validates every property first: unknown → ``PROPERTY_DOESNT_EXIST``, read-only →
``READ_ONLY_VALUE``, outside an enumeration's options → ``INVALID_OPTION``, a property made required with
:meth:`FakeHubSpot.require_property` left empty → ``REQUIRED``, all as HubSpot's 400 VALIDATION_ERROR body,
and nothing is written), ``GET /crm/v4/objects/deals/{id}/associations/{line_items|companies}`` and
``POST /crm/v3/objects/line_items/batch/read`` (207 for ids it does not have). Line items are seeded per deal
(:meth:`FakeHubSpot.add_line_items`, :meth:`FakeHubSpot.add_deal`, ``seed(line_items=…)``). The deal
properties of the write-back (odoo_order_name, tracking_number, shipment_status, label_url,
shipment_status_updated_at) exist in the fake account as custom properties; :attr:`FakeHubSpot.deal_updates`
logs every committed PATCH.

Faults for tests: :func:`rate_limited` builds HubSpot's 429 bodies (``TEN_SECONDLY_ROLLING``, ``DAILY``,
the search "secondly limit"), with ``Retry-After`` as seconds, an HTTP-date or absent; :func:`storm` answers
a share of requests with them; ``latency`` makes it slow. Knobs for the next ``n`` matching requests:
:meth:`FakeHubSpot.throttle_next` (429 with Retry-After and the rate-limit headers at 0 remaining),
:meth:`~FakeHubSpot.fail_next` (5xx), :meth:`~FakeHubSpot.slow_next`, :meth:`~FakeHubSpot.commit_then_drop`
(the PATCH is written, then the connection closes without an answer: the lost response), and
:meth:`~FakeHubSpot.set_down` (every request 503 until it is up again). Setting ``fault`` replaces the knobs.
:meth:`FakeHubSpot.enforce_rate_limit` makes the account keep a rolling burst limit as HubSpot does: at most
``per_window`` answered requests in any ``window`` seconds (on the fake's ``clock``), 429
``TEN_SECONDLY_ROLLING`` beyond it, and true ``X-HubSpot-RateLimit-Max`` / ``-Remaining`` headers.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest

__all__ = ["FakeHubSpot", "rate_limited", "storm"]

OBJECT_TYPES = ("contacts", "companies", "deals", "line_items")
MODIFIED = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
    "line_items": "hs_lastmodifieddate",
}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "line_items": "line_item"}
DEFAULT_PROPERTIES = {  # returned when a request names no properties (docs/SOURCES.md §1.2)
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": (
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ),
    "line_items": (
        "name",
        "price",
        "quantity",
        "hs_product_id",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ),
}
ALWAYS = ("hs_object_id", "createdate")  # returned with any property selection
LIST_MAX = 100
SEARCH_MAX = 200

LIFECYCLE = ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer")
LEAD_STATUS = ("NEW", "OPEN", "IN_PROGRESS", "CONNECTED")
INDUSTRIES = ("COMPUTER_SOFTWARE", "INTERNET", "RETAIL", "BANKING", "LOGISTICS_AND_SUPPLY_CHAIN")
STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "contractsent",
    "closedwon",
    "closedlost",
)
COUNTRIES = ("United States", "Germany", "France", "Netherlands")
# EasyPost tracker statuses (docs/SOURCES.md §4.2): the options of the custom deal property shipment_status.
SHIPMENT_STATUSES = (
    "unknown",
    "pre_transit",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "available_for_pickup",
    "return_to_sender",
    "failure",
    "cancelled",
    "error",
)
SKUS = (("W-100", "Widget", "19.50"), ("G-200", "Gadget", "42.00"), ("S-300", "Sprocket", "7.25"))
ASSOCIATION_TYPE_IDS = {("deals", "line_items"): 19, ("deals", "companies"): 5}  # docs/SOURCES.md §1.8
PORTAL_ID = 62515


@dataclass
class PropertyDef:
    """A property of the fake account: options for an enumeration, read-only, or required by a rule."""

    name: str
    options: tuple[str, ...] | None = None
    read_only: bool = False
    required: bool = False


@dataclass
class _Knob:
    left: int
    make: Callable[[], Fault]
    method: str | None = None
    path: str | None = None

    def matches(self, req: LoggedRequest) -> bool:
        return (self.method is None or req.method == self.method) and (
            self.path is None or self.path in req.path
        )


@dataclass
class _Drops:
    left: int = 0
    dropped: list[str] = field(default_factory=list)


class _DroppedAfterCommit(Exception):
    """Raised in a handler thread after the write: the server closes the connection without an answer."""


def hs_time(ts: datetime) -> str:
    """HubSpot's datetime form: ISO-8601 UTC with milliseconds and Z."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((ts - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


def validation_error(problems: Sequence[tuple[str, str, str]]) -> dict[str, Any]:
    """HubSpot's 400 VALIDATION_ERROR body for (property, code, message) problems (docs/SOURCES.md §1.4): the
    details both as the JSON list inside ``message`` and as ``errors[].context.propertyName``."""
    embedded = [
        {
            "isValid": False,
            "message": msg,
            "error": code,
            "name": name,
            "localizedErrorMessage": msg,
            "portalId": PORTAL_ID,
        }
        for name, code, msg in problems
    ]
    return {
        "status": "error",
        "message": f"Property values were not valid: {json.dumps(embedded, separators=(',', ':'))}",
        "correlationId": str(uuid.uuid4()),
        "errors": [
            {"message": msg, "code": code, "context": {"propertyName": [name]}}
            for name, code, msg in problems
        ],
        "category": "VALIDATION_ERROR",
    }


def _error(status: int, message: str, category: str, **extra: Any) -> tuple[int, dict[str, str], Any]:
    return (
        status,
        {},
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
            **extra,
        },
    )


def rate_limited(
    policy: Literal["TEN_SECONDLY_ROLLING", "DAILY", "SECONDLY"] = "TEN_SECONDLY_ROLLING",
    *,
    retry_after: float | None = None,
    form: Literal["seconds", "date"] = "seconds",
    delay: float = 0.0,
) -> Fault:
    """A HubSpot 429 as documented (docs/SOURCES.md §1.4); ``SECONDLY`` is the search endpoint's per-second
    limit."""
    if policy == "DAILY":
        body = {
            "status": "error",
            "message": "You have reached your daily limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "DAILY",
            "requestId": str(uuid.uuid4()),
        }
        headers = {"X-HubSpot-RateLimit-Daily-Remaining": "0"}
    elif policy == "SECONDLY":
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "requestId": str(uuid.uuid4()),
        }
        headers = {}
    else:
        body = {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "TEN_SECONDLY_ROLLING",
            "requestId": str(uuid.uuid4()),
        }
        headers = {"X-HubSpot-RateLimit-Remaining": "0"}
    return Fault(
        429,
        body,
        headers,
        retry_after=retry_after,
        retry_after_form=form,
        delay=delay,
        label=f"429 {policy} {form if retry_after is not None else 'no Retry-After'}",
    )


def storm(
    rate: float = 0.3,
    *,
    retry_after: float = 1,
    seed: int = 0,
    forms: Sequence[Literal["seconds", "date"] | None] = ("seconds", "date", None),
    policy: Literal["TEN_SECONDLY_ROLLING", "SECONDLY"] | None = None,
) -> Callable[[LoggedRequest], Fault | None]:
    """``rate`` of the requests answered 429, cycling through ``Retry-After`` forms (None: no header).

    ``policy`` None sends a 429 body without ``policyName`` (a generic throttle); the client then honours
    Retry-After, or backs off.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test faults
    turn = iter(range(1 << 30))

    def decide(req: LoggedRequest) -> Fault | None:
        if rng.random() >= rate:
            return None
        form = forms[next(turn) % len(forms)]
        if policy is None:
            body = {
                "status": "error",
                "message": "Too many requests.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
            }
            return Fault(
                429,
                body,
                {},
                retry_after=retry_after if form else None,
                retry_after_form=form or "seconds",
                label=f"429 {form or 'no Retry-After'}",
            )
        return rate_limited(policy, retry_after=retry_after if form else None, form=form or "seconds")

    return decide


class FakeHubSpot(FakeServer):
    """A HubSpot account in memory. ``seed`` fills it; ``touch`` changes records (new modified date)."""

    def __init__(
        self,
        *,
        token: str = "fake-hubspot-token",  # noqa: S107 - test token
        search_cap: int = 10_000,
        daily_limit: int = 250_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.token = token
        self.search_cap = search_cap
        self.daily_limit = daily_limit
        self.daily_used = 0
        self.clock = clock
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPES}
        self._next_id = 1000
        # deal id -> line item ids, in the order they were added
        self.deal_line_item_ids: dict[str, list[str]] = {}
        self.properties: dict[str, dict[str, PropertyDef]] = {t: {} for t in OBJECT_TYPES}
        for object_type in OBJECT_TYPES:
            for name in ("hs_object_id", "createdate", MODIFIED[object_type]):
                self.define_property(name, object_type=object_type, read_only=True)
        for name in ("odoo_order_name", "tracking_number", "label_url", "shipment_status_updated_at"):
            self.define_property(name)
        self.define_property("shipment_status", options=SHIPMENT_STATUSES)
        self.define_property("dealstage", options=STAGES)
        # every committed PATCH: {"deal_id", "properties", "at"}
        self.deal_updates: list[dict[str, Any]] = []
        self.rate_interval_ms = (
            10_000  # X-HubSpot-RateLimit-Interval-Milliseconds (the client waits it on 429)
        )
        self._knobs: list[_Knob] = []
        # enforce_rate_limit: (per_window, window seconds) and the clock times of the requests it let through
        self._rate_limit: tuple[int, float] | None = None
        self._rate_log: deque[float] = deque()
        self._rate_retry_after: float | None = None
        self._drops = _Drops()
        self._down: int | None = None
        self.fault = self._knob_fault

    # -- the account's properties -------------------------------------------------------------------------
    def define_property(
        self,
        name: str,
        *,
        object_type: str = "deals",
        options: Sequence[str] | None = None,
        read_only: bool = False,
    ) -> None:
        """Create a (custom) property, e.g. an enumeration with its option values."""
        with self.lock:
            self.properties[object_type][name] = PropertyDef(
                name, tuple(options) if options is not None else None, read_only
            )

    def require_property(self, name: str, *, object_type: str = "deals") -> None:
        """A new validation rule: a write that leaves ``name`` empty is refused (400 VALIDATION_ERROR,
        code REQUIRED). Defines the property if the account did not have it."""
        with self.lock:
            prop = self.properties[object_type].setdefault(name, PropertyDef(name))
            prop.required = True

    # -- fault knobs --------------------------------------------------------------------------------------
    def _add_knob(self, n: int, make: Callable[[], Fault], method: str | None, path: str | None) -> None:
        with self.lock:
            self._knobs.append(_Knob(n, make, method.upper() if method else None, path))

    def throttle_next(
        self,
        n: int = 1,
        *,
        retry_after: float | None = 1,
        policy: Literal["TEN_SECONDLY_ROLLING", "SECONDLY"] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next ``n`` matching requests get a 429 with ``Retry-After`` (None: without) and the rate-limit
        headers at 0 remaining. ``policy`` None is a throttle without ``policyName``, which the client waits
        out by Retry-After; TEN_SECONDLY_ROLLING makes it wait ``rate_interval_ms``."""

        def make() -> Fault:
            if policy is not None:
                f = rate_limited(policy, retry_after=retry_after)
            else:
                body = {
                    "status": "error",
                    "message": "Too many requests.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": str(uuid.uuid4()),
                }
                f = Fault(429, body, {}, retry_after=retry_after, label="429")
            f.headers.update({"X-HubSpot-RateLimit-Remaining": "0"})
            return f

        self._add_knob(n, make, method, path)

    def fail_next(
        self, n: int = 1, *, status: int = 502, method: str | None = None, path: str | None = None
    ) -> None:
        """The next ``n`` matching requests get a ``status`` (5xx) error and change nothing."""
        body = {"status": "error", "message": "Internal error", "correlationId": str(uuid.uuid4())}
        self._add_knob(n, lambda: Fault(status, body, {}, label=str(status)), method, path)

    def slow_next(
        self, n: int = 1, *, delay: float, method: str | None = None, path: str | None = None
    ) -> None:
        """The next ``n`` matching requests are answered after ``delay`` seconds (a client timeout shorter than
        that sees a timeout; the request is still processed unless the fake stops)."""
        self._add_knob(n, lambda: Fault(0, delay=delay, label=f"slow {delay}s"), method, path)

    def commit_then_drop(self, n: int = 1) -> None:
        """The next ``n`` deal PATCHes are written, then the connection is closed without an answer."""
        with self.lock:
            self._drops.left += n

    @property
    def dropped(self) -> list[str]:
        """Deal ids whose PATCH was committed and then answered with a dropped connection."""
        with self.lock:
            return list(self._drops.dropped)

    def enforce_rate_limit(
        self, per_window: int | None = 100, window: float = 10.0, *, retry_after: float | None = None
    ) -> None:
        """Keep HubSpot's rolling burst limit: at most ``per_window`` requests in any ``window`` seconds are
        answered, every further one gets a 429 ``TEN_SECONDLY_ROLLING`` with ``X-HubSpot-RateLimit-Remaining:
        0`` (and ``Retry-After`` when given) and is not counted. ``None`` switches it off."""
        with self.lock:
            self._rate_limit = None if per_window is None else (per_window, window)
            self.rate_interval_ms = int(window * 1000)
            self._rate_log.clear()
            self._rate_retry_after = retry_after

    def _rate_used(self, now: float) -> int:
        assert self._rate_limit is not None
        while self._rate_log and self._rate_log[0] <= now - self._rate_limit[1]:
            self._rate_log.popleft()
        return len(self._rate_log)

    def _over_rate_limit(self) -> Fault | None:
        with self.lock:
            if self._rate_limit is None:
                return None
            now = self.clock()
            if self._rate_used(now) >= self._rate_limit[0]:
                f = rate_limited("TEN_SECONDLY_ROLLING")
                f.headers["X-HubSpot-RateLimit-Max"] = str(self._rate_limit[0])
                if self._rate_retry_after is not None:  # answered by handle(): the header is set here
                    f.headers["Retry-After"] = str(int(self._rate_retry_after))
                return f
            self._rate_log.append(now)
        return None

    def set_down(self, down: bool = True, *, status: int = 503) -> None:
        """Every request answered ``status`` (nothing changes) until ``set_down(False)``."""
        with self.lock:
            self._down = status if down else None

    def _knob_fault(self, req: LoggedRequest) -> Fault | None:
        with self.lock:
            if self._down is not None:
                body = {
                    "status": "error",
                    "message": "Service Unavailable",
                    "correlationId": str(uuid.uuid4()),
                }
                return Fault(self._down, body, {}, label=f"down {self._down}")
            for knob in self._knobs:
                if knob.left > 0 and knob.matches(req):
                    knob.left -= 1
                    return knob.make()
            self._knobs = [k for k in self._knobs if k.left > 0]
        return None

    # -- data ----------------------------------------------------------------------------------------------
    def add(
        self,
        object_type: str,
        properties: dict[str, Any],
        *,
        associations: Iterable[str] = (),
        modified: datetime | None = None,
        created: datetime | None = None,
        record_id: str | None = None,
    ) -> str:
        """Create a record; values are stored as HubSpot sends them (strings, or None when empty)."""
        with self.lock:
            rid = record_id or str(self._next_id)
            self._next_id = max(self._next_id, int(rid) + 1) if rid.isdigit() else self._next_id + 1
            now = datetime.fromtimestamp(self.clock(), UTC)
            created = created or modified or now
            modified = modified or now
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            props.update(
                {
                    "hs_object_id": rid,
                    "createdate": hs_time(created),
                    MODIFIED[object_type]: hs_time(modified),
                }
            )
            self.objects[object_type][rid] = {
                "id": rid,
                "properties": props,
                "createdAt": hs_time(created),
                "updatedAt": hs_time(modified),
                "archived": False,
                "companies": [str(a) for a in associations],
            }
            return rid

    def touch(
        self, object_type: str, ids: Iterable[str], *, at: datetime | None = None, **properties: Any
    ) -> None:
        """Change records: set ``properties`` and move their modified date to ``at`` (default: now)."""
        with self.lock:
            when = hs_time(at or datetime.fromtimestamp(self.clock(), UTC))
            for rid in ids:
                rec = self.objects[object_type][str(rid)]
                rec["properties"].update({k: (None if v is None else str(v)) for k, v in properties.items()})
                rec["properties"][MODIFIED[object_type]] = when
                rec["updatedAt"] = when

    def archive(self, object_type: str, ids: Iterable[str], *, at: datetime | None = None) -> None:
        """Delete records the HubSpot way: archived (listed with archived=true, with archivedAt), not gone.
        Their properties, lastmodifieddate included, stay as they were."""
        with self.lock:
            when = hs_time(at or datetime.fromtimestamp(self.clock(), UTC))
            for rid in ids:
                rec = self.objects[object_type][str(rid)]
                rec.update(archived=True, archivedAt=when, updatedAt=when)

    def seed(
        self,
        *,
        companies: int = 10,
        contacts: int = 30,
        deals: int = 10,
        seed: int = 1,
        start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(minutes=7),
        line_items: int = 0,
    ) -> None:
        """Deterministic records with values the ``*_api`` contracts accept; modified dates ``step`` apart.
        ``line_items``: that many line items (SKUs from ``SKUS``) on every deal."""
        rng = random.Random(seed)  # noqa: S311 - reproducible test data
        t = start
        company_ids = []
        for i in range(companies):
            t += step
            company_ids.append(
                self.add(
                    "companies",
                    {
                        "name": f"Company {i:04d} Ltd",
                        "domain": f"company{i:04d}.example.com",
                        "industry": rng.choice(INDUSTRIES),
                        "country": rng.choice(COUNTRIES),
                        "odoo_partner_id": str(100 + i) if i % 2 == 0 else None,
                    },
                    modified=t,
                    created=t - timedelta(days=30),
                )
            )
        for i in range(contacts):
            t += step
            self.add(
                "contacts",
                {
                    "email": f"person{i:05d}@example.com",
                    "firstname": f"First{i}",
                    "lastname": f"Last{i}",
                    "phone": f"+1 555 01{i % 100:02d}" if i % 3 else None,
                    "lifecyclestage": rng.choice(LIFECYCLE),
                    "hs_lead_status": rng.choice(LEAD_STATUS) if i % 4 else None,
                    "country": rng.choice(COUNTRIES),
                },
                associations=[rng.choice(company_ids)] if company_ids and i % 5 else [],
                modified=t,
                created=t - timedelta(days=10),
            )
        items_rng = random.Random(seed + 1)  # noqa: S311 - its own stream: the records above stay as they were
        for i in range(deals):
            t += step
            deal_id = self.add(
                "deals",
                {
                    "dealname": f"Deal {i:04d}",
                    "dealstage": rng.choice(STAGES),
                    "pipeline": "default",
                    "amount": f"{rng.randint(100, 50_000)}.00",
                    "closedate": hs_time(t + timedelta(days=20)),
                },
                associations=[rng.choice(company_ids)] if company_ids else [],
                modified=t,
                created=t - timedelta(days=5),
            )
            if line_items:
                picks = [SKUS[(i + k) % len(SKUS)] for k in range(line_items)]
                self.add_line_items(
                    deal_id,
                    [
                        {"sku": sku, "name": name, "quantity": items_rng.randint(1, 5), "price": price}
                        for sku, name, price in picks
                    ],
                )

    def add_line_items(self, deal_id: str, items: Iterable[Mapping[str, Any]]) -> list[str]:
        """Line items associated with deal ``deal_id``: each ``{sku, name, quantity, price, currency}``
        (currency default USD; any other key is stored as a HubSpot property as given). Returns their ids."""
        ids = []
        with self.lock:
            for item in items:
                props = {k: v for k, v in item.items() if k not in ("sku", "currency")}
                if "sku" in item:
                    props["hs_sku"] = item["sku"]
                props["hs_line_item_currency_code"] = item.get("currency", "USD")
                q, p = item.get("quantity"), item.get("price")
                if q not in (None, "") and p not in (None, "") and "amount" not in props:
                    props["amount"] = f"{Decimal(str(q)) * Decimal(str(p)):.2f}"
                rid = self.add("line_items", props)
                self.deal_line_item_ids.setdefault(str(deal_id), []).append(rid)
                ids.append(rid)
        return ids

    def add_deal(
        self,
        properties: Mapping[str, Any] | None = None,
        *,
        company: str | None = None,
        items: Iterable[Mapping[str, Any]] = (),
        record_id: str | None = None,
    ) -> str:
        """A deal (closedwon unless ``properties`` say otherwise) associated with ``company``, with line items;
        ``amount`` defaults to the items' total."""
        items = list(items)
        props: dict[str, Any] = {"dealname": "Deal", "dealstage": "closedwon", "pipeline": "default"}
        props.update(properties or {})
        if "amount" not in props and items:
            total = sum(
                Decimal(str(i.get("quantity") or 0)) * Decimal(str(i.get("price") or 0)) for i in items
            )
            props["amount"] = f"{total:.2f}"
        with self.lock:
            deal_id = self.add("deals", props, associations=[company] if company else [], record_id=record_id)
            if items:
                self.add_line_items(deal_id, items)
        return deal_id

    # -- HTTP ----------------------------------------------------------------------------------------------
    def extra_headers(self, req: LoggedRequest, status: int) -> dict[str, str]:
        limit, remaining = 190, 189
        with self.lock:
            if self._rate_limit is not None:
                limit = self._rate_limit[0]
                remaining = max(0, limit - self._rate_used(self.clock()))
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.daily_used)),
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.rate_interval_ms),
        }

    def handle(self, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
                "oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        if (throttled := self._over_rate_limit()) is not None:
            return 429, throttled.headers, throttled.body
        self.daily_used += 1
        if self.daily_used > self.daily_limit:
            f = rate_limited("DAILY")
            return 429, f.headers, f.body
        parts = [p for p in req.path.split("/") if p]
        with self.lock:
            if len(parts) == 4 and parts[:3] == ["crm", "v3", "objects"] and req.method == "GET":
                return self._list(parts[3], req)
            if len(parts) == 5 and parts[:3] == ["crm", "v3", "objects"] and parts[4] != "search":
                if req.method == "GET":
                    return self._get_one(parts[3], parts[4], req)
                if req.method == "PATCH":
                    return self._patch(parts[3], parts[4], req)
            if (
                len(parts) == 6
                and parts[:3] == ["crm", "v3", "objects"]
                and parts[4:] == ["batch", "read"]
                and req.method == "POST"
            ):
                return self._batch_read(parts[3], req)
            if (
                len(parts) == 7
                and parts[:3] == ["crm", "v4", "objects"]
                and parts[5] == "associations"
                and req.method == "GET"
            ):
                return self._associations_v4(parts[3], parts[4], parts[6], req)
            if (
                len(parts) == 5
                and parts[:3] == ["crm", "v3", "objects"]
                and parts[4] == "search"
                and req.method == "POST"
            ):
                return self._search(parts[3], req)
            if (
                len(parts) == 7
                and parts[:3] == ["crm", "v3", "associations"]
                and parts[5:] == ["batch", "read"]
                and req.method == "POST"
            ):
                return self._associations(parts[3], parts[4], req)
        return _error(404, f"No route for {req.method} {req.path}", "OBJECT_NOT_FOUND")

    def _shape(
        self,
        object_type: str,
        rec: dict[str, Any],
        properties: Sequence[str] | None,
        associations: Sequence[str] = (),
    ) -> dict[str, Any]:
        stored = rec["properties"]
        names = list(properties) if properties else list(DEFAULT_PROPERTIES[object_type])
        known = self._known_properties(object_type)
        out_props: dict[str, Any] = {}
        for name in [*ALWAYS, MODIFIED[object_type], *names]:
            if name in known or name in stored:
                out_props[name] = stored.get(name)
        out = {
            "id": rec["id"],
            "properties": out_props,
            "createdAt": rec["createdAt"],
            "updatedAt": rec["updatedAt"],
            "archived": bool(rec.get("archived")),
        }
        if rec.get("archived"):
            out["archivedAt"] = rec["archivedAt"]
        if "companies" in associations and rec["companies"]:
            kind = f"{SINGULAR[object_type]}_to_company"
            out["associations"] = {
                "companies": {"results": [{"id": c, "type": kind} for c in rec["companies"]]}
            }
        return out

    def _known_properties(self, object_type: str) -> set[str]:
        names: set[str] = set(DEFAULT_PROPERTIES[object_type]) | set(self.properties[object_type])
        for rec in self.objects[object_type].values():
            names.update(rec["properties"])
        return names

    def _not_found(self, object_type: str, rid: str) -> tuple[int, dict[str, str], Any]:
        return _error(404, "resource not found", "OBJECT_NOT_FOUND", context={"id": [rid]})

    def _live(self, object_type: str, rid: str) -> dict[str, Any] | None:
        rec = self.objects.get(object_type, {}).get(rid)
        return rec if rec is not None and not rec.get("archived") else None

    def _get_one(self, object_type: str, rid: str, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if object_type not in self.objects:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        rec = self._live(object_type, rid)
        if rec is None:
            return self._not_found(object_type, rid)
        props, assocs = self._csv(req.query.get("properties")), self._csv(req.query.get("associations"))
        return 200, {}, self._shape(object_type, rec, props, assocs)

    def _patch(self, object_type: str, rid: str, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if object_type not in self.objects:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        rec = self._live(object_type, rid)
        if rec is None:
            return self._not_found(object_type, rid)
        body = req.body if isinstance(req.body, dict) else {}
        given = body.get("properties")
        if not isinstance(given, dict):
            return _error(400, "Invalid input JSON: properties must be an object", "VALIDATION_ERROR")
        known = self._known_properties(object_type)
        defs = self.properties[object_type]
        problems: list[tuple[str, str, str]] = []
        for name, raw in given.items():
            value = "" if raw is None else str(raw)
            prop = defs.get(name)
            if name not in known:
                problems.append((name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
            elif prop is not None and prop.read_only:
                problems.append((name, "READ_ONLY_VALUE", f'Property "{name}" is a read only property'))
            elif prop is not None and prop.options is not None and value and value not in prop.options:
                allowed = ", ".join(prop.options)
                problems.append(
                    (name, "INVALID_OPTION", f"{value} was not one of the allowed options: [{allowed}]")
                )
        merged = {**rec["properties"], **{k: ("" if v is None else str(v)) for k, v in given.items()}}
        for prop in defs.values():
            if prop.required and not merged.get(prop.name):
                problems.append((prop.name, "REQUIRED", f'Property "{prop.name}" is required'))
        if problems:
            return 400, {}, validation_error(problems)
        when = hs_time(datetime.fromtimestamp(self.clock(), UTC))
        # An empty string clears a property (docs/SOURCES.md §1.7).
        rec["properties"].update({k: (None if v in (None, "") else str(v)) for k, v in given.items()})
        rec["properties"][MODIFIED[object_type]] = when
        rec["updatedAt"] = when
        self.deal_updates.append(
            {"object_type": object_type, "deal_id": rid, "properties": dict(given), "at": self.clock()}
        )
        if self._drops.left > 0:
            self._drops.left -= 1
            self._drops.dropped.append(rid)
            req.fault = "commit_then_drop"
            raise _DroppedAfterCommit(rid)
        # Which properties the 200 echoes is not documented (§1.7): the defaults plus the ones written.
        return 200, {}, self._shape(object_type, rec, [*DEFAULT_PROPERTIES[object_type], *given])

    def _batch_read(self, object_type: str, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if object_type not in self.objects:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        body = req.body if isinstance(req.body, dict) else {}
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            return _error(400, "Batch size must be at most 100", "VALIDATION_ERROR")
        props = list(body.get("properties") or [])
        results, missing = [], []
        for item in inputs:
            rid = str((item or {}).get("id"))
            rec = self._live(object_type, rid)
            if rec is None:
                missing.append(rid)
            else:
                results.append(self._shape(object_type, rec, props))
        now = hs_time(datetime.fromtimestamp(self.clock(), UTC))
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"Could not get some {object_type} objects, they may be deleted or not exist. "
                    f"Check that ids are valid.",
                    "context": {"ids": missing},
                }
            ]
        return (207 if missing else 200), {}, out

    def _associations_v4(
        self, from_type: str, rid: str, to_type: str, req: LoggedRequest
    ) -> tuple[int, dict[str, str], Any]:
        if from_type != "deals" or to_type not in ("line_items", "companies"):
            return _error(400, f"Unknown association {from_type} -> {to_type}", "VALIDATION_ERROR")
        rec = self._live(from_type, rid)
        if rec is None:
            return self._not_found(from_type, rid)
        limit = int((req.query.get("limit") or ["500"])[0])
        if not 1 <= limit <= 500:
            return _error(400, "limit must be between 1 and 500", "VALIDATION_ERROR")
        ids = (
            list(self.deal_line_item_ids.get(rid, [])) if to_type == "line_items" else list(rec["companies"])
        )
        start = int((req.query.get("after") or ["0"])[0] or 0)
        page = ids[start : start + limit]
        type_id = ASSOCIATION_TYPE_IDS[(from_type, to_type)]
        body: dict[str, Any] = {
            "results": [
                {
                    "toObjectId": i,
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}],
                }
                for i in page
            ]
        }
        if start + limit < len(ids):
            body["paging"] = {"next": {"after": str(start + limit), "link": f"?after={start + limit}"}}
        return 200, {}, body

    @staticmethod
    def _csv(values: list[str] | None) -> list[str]:
        return [x for v in values or [] for x in v.split(",") if x]

    def _list(self, object_type: str, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if object_type not in self.objects:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        q = req.query
        limit = int((q.get("limit") or ["10"])[0])
        if not 1 <= limit <= LIST_MAX:
            return _error(400, f"limit must be between 1 and {LIST_MAX}", "VALIDATION_ERROR")
        archived = (q.get("archived") or ["false"])[0] == "true"
        after = (q.get("after") or [""])[0]
        start = int(base64.urlsafe_b64decode(after.encode()).decode()) if after else 0
        ordered = sorted(
            (
                r
                for r in self.objects[object_type].values()
                if int(r["id"]) >= start and bool(r.get("archived")) == archived
            ),
            key=lambda r: int(r["id"]),
        )
        page, rest = ordered[:limit], ordered[limit:]
        props, assocs = self._csv(q.get("properties")), self._csv(q.get("associations"))
        body: dict[str, Any] = {"results": [self._shape(object_type, r, props, assocs) for r in page]}
        if rest:
            token = base64.urlsafe_b64encode(rest[0]["id"].encode()).decode()
            body["paging"] = {"next": {"after": token, "link": f"?after={token}"}}
        return 200, {}, body

    def _matches(self, object_type: str, rec: dict[str, Any], f: dict[str, Any]) -> bool:
        name, op = f.get("propertyName"), f.get("operator", "EQ")
        value = rec["id"] if name == "hs_object_id" else rec["properties"].get(name)
        if op == "HAS_PROPERTY":
            return value not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return value in (None, "")
        if value is None:
            return False

        def cmp_key(v: Any) -> Any:
            ms = _ms(v) if (name or "").endswith("date") else None
            if ms is not None:
                return ms
            try:
                return float(v)
            except (TypeError, ValueError):
                return str(v).lower()

        left = cmp_key(value)
        if op == "IN":
            return left in {cmp_key(v) for v in f.get("values") or []}
        if op == "NOT_IN":
            return left not in {cmp_key(v) for v in f.get("values") or []}
        if op == "BETWEEN":
            return cmp_key(f.get("value")) <= left <= cmp_key(f.get("highValue"))
        right = cmp_key(f.get("value"))
        return {
            "EQ": left == right,
            "NEQ": left != right,
            "LT": left < right,
            "LTE": left <= right,
            "GT": left > right,
            "GTE": left >= right,
            "CONTAINS_TOKEN": str(right) in str(left),
            "NOT_CONTAINS_TOKEN": str(right) not in str(left),
        }[op]

    def _search(self, object_type: str, req: LoggedRequest) -> tuple[int, dict[str, str], Any]:
        if object_type not in self.objects:
            return _error(400, f"Unable to infer object type from: {object_type}", "VALIDATION_ERROR")
        body = req.body if isinstance(req.body, dict) else {}
        limit = int(body.get("limit") or 10)
        if not 1 <= limit <= SEARCH_MAX:
            return _error(400, f"limit must be between 1 and {SEARCH_MAX}", "VALIDATION_ERROR")
        offset = int(body.get("after") or 0)
        if offset >= self.search_cap:
            return _error(400, f"Paging past {self.search_cap} results is not supported.", "VALIDATION_ERROR")
        groups = body.get("filterGroups") or []
        records = [
            r
            for r in self.objects[object_type].values()
            if not r.get("archived")
            and (
                not groups
                or any(all(self._matches(object_type, r, f) for f in g.get("filters") or []) for g in groups)
            )
        ]
        records.sort(key=lambda r: int(r["id"]))
        for s in reversed(body.get("sorts") or []):
            name = str(s.get("propertyName") or "")

            def key(r: dict[str, Any], n: str = name) -> Any:
                value = r["properties"].get(n)
                return (_ms(value) or 0) if n.endswith("date") else str(value or "")

            records.sort(key=key, reverse=s.get("direction") == "DESCENDING")
        page = records[offset : offset + limit]
        out: dict[str, Any] = {
            "total": len(records),
            "results": [self._shape(object_type, r, body.get("properties")) for r in page],
        }
        if offset + limit < len(records):
            out["paging"] = {"next": {"after": str(offset + limit), "link": f"?after={offset + limit}"}}
        return 200, {}, out

    def _associations(
        self, from_type: str, to_type: str, req: LoggedRequest
    ) -> tuple[int, dict[str, str], Any]:
        if from_type not in self.objects or to_type != "companies":
            return _error(400, f"Unknown association {from_type} -> {to_type}", "VALIDATION_ERROR")
        inputs = (req.body or {}).get("inputs") or []
        results, errors = [], []
        kind = f"{SINGULAR[from_type]}_to_company"
        for item in inputs:
            rid = str(item.get("id"))
            rec = self.objects[from_type].get(rid)
            if rec and rec["companies"]:
                results.append(
                    {"from": {"id": rid}, "to": [{"id": c, "type": kind} for c in rec["companies"]]}
                )
            else:
                errors.append(
                    {
                        "status": "error",
                        "category": "OBJECT_NOT_FOUND",
                        "subCategory": "NO_ASSOCIATIONS_FOUND",
                        "message": f"No {SINGULAR[to_type]} is associated with {SINGULAR[from_type]} {rid}.",
                        "context": {"fromObjectId": [rid]},
                    }
                )
        now = hs_time(datetime.fromtimestamp(self.clock(), UTC))
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": now,
            "completedAt": now,
        }
        if errors:
            body.update(numErrors=len(errors), errors=errors)
        return (207 if errors else 200), {}, body
