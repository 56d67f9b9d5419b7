"""A local HubSpot CRM v3 that speaks the documented wire format (docs/SOURCES.md §1), for tests and demos.

Endpoints: ``GET /crm/v3/objects/{type}`` (limit ≤ 100, opaque ``after``, ``properties``, ``associations``,
no ``paging`` on the last page), ``POST /crm/v3/objects/{type}/search`` (filterGroups ORed, filters ANDed,
one sort, limit ≤ 200, ``after`` an offset, 400 past ``search_cap`` results, ``total``), and
``POST /crm/v3/associations/{from}/{to}/batch/read`` (207 when some ids have none). Bearer auth (401 with the
error body otherwise), ``X-HubSpot-RateLimit-*`` headers on every answer, property values as strings,
requested-but-empty properties as ``null``, unknown requested properties omitted.

Faults for tests: :func:`rate_limited` builds HubSpot's 429 bodies (``TEN_SECONDLY_ROLLING``, ``DAILY``,
the search "secondly limit"), with ``Retry-After`` as seconds, an HTTP-date or absent; :func:`storm` answers
a share of requests with them; ``latency`` makes it slow.
"""

from __future__ import annotations

import base64
import random
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest

__all__ = ["FakeHubSpot", "rate_limited", "storm"]

OBJECT_TYPES = ("contacts", "companies", "deals")
MODIFIED = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal"}
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
    ) -> None:
        """Deterministic records with values the ``*_api`` contracts accept; modified dates ``step`` apart."""
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
        for i in range(deals):
            t += step
            self.add(
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

    # -- HTTP ----------------------------------------------------------------------------------------------
    def extra_headers(self, req: LoggedRequest, status: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.daily_used)),
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Remaining": "189",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
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
        self.daily_used += 1
        if self.daily_used > self.daily_limit:
            f = rate_limited("DAILY")
            return 429, f.headers, f.body
        parts = [p for p in req.path.split("/") if p]
        with self.lock:
            if len(parts) == 4 and parts[:3] == ["crm", "v3", "objects"] and req.method == "GET":
                return self._list(parts[3], req)
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
        names: set[str] = set(DEFAULT_PROPERTIES[object_type])
        for rec in self.objects[object_type].values():
            names.update(rec["properties"])
        return names

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
