"""A local Stripe API v1 (read side) that speaks the documented wire format (docs/SOURCES.md §3), and sends
the events it makes as signed webhooks, for tests and demos.

- :meth:`FakeStripe.emit` makes an Event (``evt_…`` id, ``created`` on the fake's clock, ``data.object`` the
  snapshot) and keeps the object's latest state; with an endpoint set (:meth:`endpoint`) it also delivers the
  event to the receiver, signed with ``Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.body")`` (the scheme
  ``providers/stripe.py`` verifies). A delivery that fails (receiver down, non-2xx) stays pending;
  :meth:`retry_deliveries` sends the pending ones again, :meth:`redeliver` sends any event again.
- ``GET /v1/events`` (``created`` as an int or ``created[gt|gte|lt|lte]``, ``type`` with ``*``, ``types[]``,
  ``limit`` ≤ 100, ``starting_after``/``ending_before``), newest first, the list envelope ``{"object": "list",
  "data", "has_more", "url"}``. Events older than the retention (30 days on the fake's clock) are gone:
  absent from the list and 404 ``resource_missing`` on ``GET /v1/events/{id}``.
- ``GET /v1/payment_intents``, ``/v1/charges``, ``/v1/refunds``: the objects by their own ``created``, in
  their latest state, same filters and paging (no retention).
- Auth ``Bearer <api key>``, else 401 ``{"error": {"type": "invalid_request_error", …}}``.

Fault knobs: :meth:`down` / :meth:`up` (503 ``api_error`` with ``Stripe-Should-Retry: true``; optionally only
while the fake's clock is inside a window), :meth:`rate_limit` (429 ``rate_limit`` with ``Retry-After``),
:attr:`sloppy_window_s` (the list also returns records that many seconds outside the asked window).
"""

from __future__ import annotations

import fnmatch
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from integration_assets.providers.stripe import sign
from integration_assets.sandbox.fakes._server import FakeServer, Fault, LoggedRequest

__all__ = ["Delivery", "FakeStripe"]

Answer = tuple[int, dict[str, str], Any]
RETENTION = timedelta(days=30)
MAX_LIMIT = 100
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LISTS = {"payment_intents": "payment_intent", "charges": "charge", "refunds": "refund"}


def error(status: int, type_: str, message: str, code: str | None = None, **headers: str) -> Answer:
    """An answer in Stripe's error envelope (docs/SOURCES.md §3.4)."""
    body: dict[str, Any] = {"type": type_, "message": message}
    if code:
        body["code"] = code
    return status, dict(headers), {"error": body}


@dataclass
class Delivery:
    """One webhook delivery attempt: the event id, the status the receiver answered (None: no answer)."""

    event_id: str
    status: int | None
    at: float


class FakeStripe(FakeServer):
    """A Stripe account in memory. Ids are deterministic for a ``seed`` (``evt_``/``pi_``… + 24 characters)."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake_stripe_key",
        webhook_secret: str = "whsec_fake_stripe_secret",  # noqa: S107 - a fake's test secret
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        retention: timedelta = RETENTION,
        api_version: str = "2024-06-20",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.clock = clock
        self.retention = retention
        self.api_version = api_version
        self.events: list[dict[str, Any]] = []  # oldest first
        self._event_ids: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in _LISTS.values()}
        self._rng = random.Random(seed)  # noqa: S311 - ids, not secrets
        self._webhook_url: str | None = None
        self._sender: httpx.Client | None = None  # one client for every delivery (a new one costs ~0.1 s)
        self.deliveries: list[Delivery] = []
        self._delivered: set[str] = set()  # events the receiver took (2xx)
        self.sloppy_window_s = 0
        self._down: tuple[float | None, float | None] | None = None
        self._rate_limited: list[Fault] = []
        self.fault = self._fault

    # -- the account ------------------------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        with self.lock:
            return f"{prefix}_{''.join(self._rng.choices(_ALPHABET, k=24))}"

    def emit(
        self, type_: str, obj: dict[str, Any], *, created: int | None = None, deliver: bool = True
    ) -> dict[str, Any]:
        """A new event of ``type_`` carrying a snapshot of ``obj`` (an object with ``id`` and ``object``),
        created now on the fake's clock unless ``created`` is given; delivered to the endpoint if one is set
        and ``deliver``. Returns the event."""
        with self.lock:
            when = int(self.clock()) if created is None else created
            event = {
                "id": self.new_id("evt"),
                "object": "event",
                "api_version": self.api_version,
                "created": when,
                "data": {"object": json.loads(json.dumps(obj))},
                "livemode": False,
                "pending_webhooks": 1 if self._webhook_url else 0,
                "request": {"id": None, "idempotency_key": None},
                "type": type_,
            }
            self.events.append(event)
            self._event_ids[event["id"]] = event
            kind = obj.get("object")
            if kind in self.objects:
                self.objects[kind][obj["id"]] = json.loads(json.dumps(obj))
        if deliver and self._webhook_url:
            self._deliver(event)
        return event

    # -- webhooks ---------------------------------------------------------------------------------------------
    def endpoint(self, url: str | None) -> None:
        """Where events are delivered (the receiver's ``…/webhooks/stripe``); None: no endpoint."""
        self._webhook_url = url

    def _deliver(self, event: dict[str, Any]) -> int | None:
        assert self._webhook_url is not None
        body = json.dumps(event, separators=(",", ":")).encode()
        # Signed at sending time on the real clock: the receiver checks the timestamp against its own clock.
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": sign(body, self.webhook_secret, int(time.time())),
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        status: int | None
        with self.lock:
            if self._sender is None:
                self._sender = httpx.Client(timeout=10.0)
            sender = self._sender
        try:
            status = sender.post(self._webhook_url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = None
        with self.lock:
            self.deliveries.append(Delivery(event["id"], status, time.time()))
            if status is not None and 200 <= status < 300:
                self._delivered.add(event["id"])
        return status

    def stop(self) -> None:
        super().stop()
        if self._sender is not None:
            self._sender.close()

    def pending(self) -> list[str]:
        """Ids of events whose deliveries all failed so far (Stripe would keep retrying them)."""
        with self.lock:
            return [e["id"] for e in self.events if e["id"] not in self._delivered]

    def retry_deliveries(self) -> dict[str, int | None]:
        """Send every pending event again (Stripe's automatic retries); event id -> status."""
        return {evt: self._deliver(self._event_ids[evt]) for evt in self.pending()}

    def redeliver(self, event_ids: list[str] | None = None) -> dict[str, int | None]:
        """Send events again whatever their earlier deliveries did (a manual "Resend"); all when None."""
        ids = [e["id"] for e in self.events] if event_ids is None else event_ids
        return {evt: self._deliver(self._event_ids[evt]) for evt in ids}

    # -- knobs ------------------------------------------------------------------------------------------------
    def down(self, *, start: float | None = None, end: float | None = None) -> None:
        """503 on every API request until :meth:`up`, or only while the fake's clock is in ``[start, end)``."""
        with self.lock:
            self._down = (start, end)

    def up(self) -> None:
        with self.lock:
            self._down = None

    def rate_limit(self, times: int = 1, *, retry_after: float = 1.0) -> None:
        """The next ``times`` API requests answer 429 with ``Retry-After``."""
        with self.lock:
            for _ in range(times):
                self._rate_limited.append(
                    Fault(
                        429,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "code": "rate_limit",
                                "message": "Request rate limit exceeded.",
                            }
                        },
                        headers={"Stripe-Rate-Limited-Reason": "global-rate"},
                        retry_after=retry_after,
                        label="429 rate_limit",
                    )
                )

    def _fault(self, req: LoggedRequest) -> Fault | None:
        with self.lock:
            if self._down is not None:
                start, end = self._down
                now = self.clock()
                if (start is None or now >= start) and (end is None or now < end):
                    return Fault(
                        503,
                        {"error": {"type": "api_error", "message": "Service unavailable."}},
                        headers={"Stripe-Should-Retry": "true"},
                        label="503 down",
                    )
            if self._rate_limited:
                return self._rate_limited.pop(0)
        return None

    # -- HTTP -------------------------------------------------------------------------------------------------
    def handle(self, req: LoggedRequest) -> Answer:
        auth = req.headers.get("Authorization") or req.headers.get("authorization") or ""
        if auth != f"Bearer {self.api_key}":
            return error(
                401,
                "invalid_request_error",
                "Invalid API Key provided.",
                code="api_key_invalid" if auth else None,
            )
        if req.method != "GET":
            return error(405, "invalid_request_error", f"{req.method} is not supported by this fake.")
        parts = req.path.rstrip("/").split("/")
        if req.path == "/v1/events":
            return self._list(req, "/v1/events", self._live_events(), events=True)
        if len(parts) == 4 and parts[:3] == ["", "v1", "events"]:
            event = self._event_ids.get(parts[3])
            if event is None or event not in self._live_events():
                return error(
                    404,
                    "invalid_request_error",
                    f"No such event: '{parts[3]}'",
                    code="resource_missing",
                )
            return 200, {}, event
        if len(parts) == 3 and parts[2] in _LISTS:
            with self.lock:
                objects = list(self.objects[_LISTS[parts[2]]].values())
            return self._list(req, req.path, objects, events=False)
        return error(404, "invalid_request_error", f"Unrecognized request URL (GET: {req.path}).")

    def _live_events(self) -> list[dict[str, Any]]:
        cutoff = self.clock() - self.retention.total_seconds()
        with self.lock:
            return [e for e in self.events if e["created"] >= cutoff]

    def _list(self, req: LoggedRequest, url: str, records: list[dict[str, Any]], *, events: bool) -> Answer:
        q = req.query

        def one(name: str) -> str | None:
            values = q.get(name)
            return values[0] if values else None

        try:
            limit = int(one("limit") or 10)
            bounds = {op: int(v) for op in ("gt", "gte", "lt", "lte") if (v := one(f"created[{op}]"))}
            exact = int(v) if (v := one("created")) else None
        except ValueError:
            return error(400, "invalid_request_error", "Invalid integer.", code="parameter_invalid_integer")
        if not 1 <= limit <= MAX_LIMIT:
            return error(400, "invalid_request_error", "limit must be between 1 and 100.")
        slack = self.sloppy_window_s

        def inside(created: int) -> bool:
            if exact is not None and created != exact:
                return False
            return (
                ("gt" not in bounds or created > bounds["gt"] - slack)
                and ("gte" not in bounds or created >= bounds["gte"] - slack)
                and ("lt" not in bounds or created < bounds["lt"] + slack)
                and ("lte" not in bounds or created <= bounds["lte"] + slack)
            )

        type_pattern, types = one("type"), q.get("types[]") or []
        if type_pattern and types:
            return error(400, "invalid_request_error", "You may pass either type or types, but not both.")
        picked = []
        for pos, r in enumerate(records):
            if not inside(int(r["created"])):
                continue
            if events and type_pattern and not fnmatch.fnmatchcase(r["type"], type_pattern):
                continue
            if events and types and r["type"] not in types:
                continue
            picked.append((pos, r))
        # Newest first; within one second the later-made record first.
        ordered = [r for _, r in sorted(picked, key=lambda pr: (pr[1]["created"], pr[0]), reverse=True)]
        after, before = one("starting_after"), one("ending_before")
        ids = [r["id"] for r in ordered]
        if after is not None:
            if after not in ids:
                return error(
                    400, "invalid_request_error", f"No such object: '{after}'", code="resource_missing"
                )
            ordered = ordered[ids.index(after) + 1 :]
            page, has_more = ordered[:limit], len(ordered) > limit
        elif before is not None:
            if before not in ids:
                return error(
                    400, "invalid_request_error", f"No such object: '{before}'", code="resource_missing"
                )
            earlier = ordered[: ids.index(before)]
            page, has_more = earlier[-limit:], len(earlier) > limit
        else:
            page, has_more = ordered[:limit], len(ordered) > limit
        return 200, {}, {"object": "list", "data": page, "has_more": has_more, "url": url}
