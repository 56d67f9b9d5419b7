"""EasyPost API v2: verify an address, create a shipment, buy its label, refund it (docs/SOURCES.md §4).

Wire format: ``Authorization: Bearer <api key>``, JSON bodies wrapped in the object name
(``{"shipment": {…}}``), money as decimal strings. Shipments are listed newest first with ``before_id`` paging
and ``has_more``.

Exactly once in effect (docs/SOURCES.md §4.6): EasyPost documents no idempotency key, so

- a shipment carries ``reference`` = the chain key, and a create whose answer was lost (timeout, dropped
  connection, 5xx after the commit) is never simply sent again: before each retry of the create the client
  pages the shipments list back to the first attempt and returns the shipment it finds with that reference;
  :meth:`EasyPostClient.find_shipment_by_reference` is the same lookup for a caller that crashed in between;
- buying a shipment that already has a label answers ``SHIPMENT.POSTAGE.EXISTS``; the client then returns
  the shipment as it is (one label, whatever the number of buy calls);
- a refund already submitted is returned as it is.

Transient failures (429 honouring ``Retry-After``, 408, 5xx, timeouts, refused connections) are retried inside,
through the shared HTTP seam (``connectors/_http.py``); when the attempts are spent :class:`RetriesExhausted`
(a ``TransientError``) escapes and the caller's queue retries later. Everything else is terminal:
:class:`EasyPostRejected` with EasyPost's ``code`` and the ``field`` named, :class:`NoRates`. The API key is
sent only as a header and masked in every message.

One client may be shared by the threads of a step: ``httpx.Client`` is thread-safe and every call keeps its
state in the call.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from integration_assets.connectors._http import DEFAULT_TIMEOUT, HttpClient, HttpConnector, StatusRecorder
from integration_assets.connectors._retry import (
    Classifier,
    HttpRetry,
    RetriesExhausted,
    RetryBudget,
    Throttle,
    Verdict,
)
from integration_assets.connectors.easypost.errors import (
    POSTAGE_EXISTS,
    EasyPostAuthError,
    EasyPostRejected,
    NoRates,
    classify_easypost,
    json_body,
)

__all__ = ["DEFAULT_BASE_URL", "EasyPostClient", "RetriesExhausted", "select_rate"]

log = logging.getLogger(__name__)

SYSTEM = "easypost"
DEFAULT_BASE_URL = "https://api.easypost.com"
LIST_PAGE_SIZE = 100  # the list endpoints' maximum (docs/SOURCES.md §4.5)
# A step call should not hold a worker for minutes: a few quick retries here, then the queue's backoff.
DEFAULT_RETRY = HttpRetry(max_attempts=4, backoff_base=0.5, backoff_cap=8.0, max_wait=60.0)
# Our clock and EasyPost's differ: a lookup starts this much before the first attempt of the create.
LOOKUP_SKEW = timedelta(minutes=5)
REFUND_DONE = ("submitted", "refunded")


class _AlreadyCreated(Exception):  # a signal that ends the retries, not a failure
    """Stops the retries of a create: the lost attempt did create the shipment."""

    def __init__(self, shipment: dict[str, Any]) -> None:
        super().__init__(shipment.get("id"))
        self.shipment = shipment


class _LookupBeforeRetry(Throttle):
    """The shared HTTP client calls ``wait()`` before every attempt of a request. From the second attempt of a
    create on, this looks the reference up first: the attempt whose answer was lost may have created it.

    Only a 429 proves nothing was created (EasyPost's limiter answers before the work); after a timeout, a
    dropped connection or a 5xx the lookup runs. ``classify`` wraps the client's classifier to see the status.
    """

    def __init__(self, lookup: Callable[[], dict[str, Any] | None], classify: Classifier) -> None:
        super().__init__(0.0)
        self._lookup = lookup
        self._classify = classify
        self.attempts = 0
        self.answered: int | None = None  # the status of the last attempt; None when it got no answer

    def classify(self, response: httpx.Response, now: float) -> Verdict:
        self.answered = response.status_code
        return self._classify(response, now)

    def wait(self) -> None:
        self.attempts += 1
        if self.attempts > 1 and self.answered != 429 and (found := self._lookup()) is not None:
            raise _AlreadyCreated(found)
        self.answered = None


def _iso(ts: datetime) -> str:
    """EasyPost's timestamp form: ISO-8601 UTC, whole seconds, ``Z`` (rounded down)."""
    ts = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _rate_messages(shipment: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for m in shipment.get("messages") or []:
        if isinstance(m, dict):
            out.append((str(m.get("carrier") or "?"), " ".join(str(m.get("message") or "").split())[:160]))
    return tuple(out)


def select_rate(
    shipment: dict[str, Any], *, carrier: str | None = None, service: str | None = None
) -> dict[str, Any]:
    """The cheapest rate of ``shipment``, among those of ``carrier``/``service`` when given (case-insensitive).

    The same choice as EasyPost's own ``lowest_rate`` (docs/SOURCES.md §4.5); ties go to the faster, then to
    the carrier and service names, so the choice is deterministic. :class:`NoRates` when none is left.
    """
    rates = [r for r in shipment.get("rates") or [] if isinstance(r, dict)]
    if carrier:
        rates = [r for r in rates if str(r.get("carrier") or "").lower() == carrier.lower()]
    if service:
        rates = [r for r in rates if str(r.get("service") or "").lower() == service.lower()]
    if not rates:
        wanted = " ".join(x for x in (carrier, service) if x) or "any carrier"
        messages = _rate_messages(shipment)
        detail = "; ".join(f"{c}: {m}" for c, m in messages[:5])
        raise NoRates(
            f"EasyPost shipment {shipment.get('id')} has no rate for {wanted}"
            f" ({len(shipment.get('rates') or [])} rate(s) in all){f' [{detail}]' if detail else ''}",
            shipment_id=shipment.get("id"),
            messages=messages,
        )

    def key(r: dict[str, Any]) -> tuple[float, int, str, str]:
        days = r.get("delivery_days")
        return (
            float(r.get("rate") or "inf"),
            int(days) if isinstance(days, int) else 1 << 30,
            str(r.get("carrier")),
            str(r.get("service")),
        )

    return min(rates, key=key)


class EasyPostClient(HttpConnector):
    """The live EasyPost connector (one per step run or shared by its threads; close it, or use ``with``)."""

    system = SYSTEM

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: HttpClient | None = None,
        status_recorder: StatusRecorder | None = None,
        max_attempts: int | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: HttpRetry | None = None,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """``http``: a ready seam (it must send the key: build it with :meth:`build_http`); otherwise one is
        built from the other arguments. ``max_attempts`` overrides the attempts of ``retry``."""
        if not api_key and http is None:
            raise EasyPostAuthError(
                "no EasyPost API key: set EASYPOST_API_KEY (EZTK… test or EZAK… production)"
            )
        self.clock = clock
        self.http = http or self.build_http(
            base_url,
            api_key,
            transport=transport,
            timeout=timeout,
            retry=retry,
            max_attempts=max_attempts,
            budget=budget,
            recorder=status_recorder,
            sleep=sleep,
            clock=clock,
            rng=rng,
        )
        if api_key and api_key not in self.http.secrets:
            self.http.secrets = (*self.http.secrets, api_key)

    @staticmethod
    def build_http(
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: HttpRetry | None = None,
        max_attempts: int | None = None,
        budget: RetryBudget | None = None,
        recorder: StatusRecorder | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> HttpClient:
        """The HTTP seam for EasyPost: Bearer key, EasyPost's error classification, the key masked."""
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
        root = base_url.rstrip("/")
        root = root[: -len("/v2")] if root.endswith("/v2") else root
        return HttpClient(
            SYSTEM,
            root,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            transport=transport,
            timeout=timeout,
            retry=policy,
            # A long-lived outbound client: each call is bounded by its attempts, and the queue retries later;
            # a run-wide budget would end up refusing every retry of a client that lives for hours.
            budget=budget or RetryBudget(limit=1_000_000),
            classify=functools.partial(classify_easypost, secrets=(api_key,)),
            recorder=recorder,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter
            secrets=(api_key,),
        )

    @classmethod
    def from_settings(cls, **kw: Any) -> EasyPostClient:
        """A client from EASYPOST_BASE_URL and EASYPOST_API_KEY; ``kw`` as for the constructor."""
        from integration_assets.settings import get_settings

        s = get_settings()
        return cls(kw.pop("base_url", s.easypost_base_url), kw.pop("api_key", s.easypost_api_key or ""), **kw)

    def __repr__(self) -> str:  # never the key
        return f"EasyPostClient(base_url={self.http.base_url!r})"

    # -- plumbing -------------------------------------------------------------------------------------------
    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        data = json_body(response)
        if not data:
            raise EasyPostRejected(
                f"EasyPost {what}: the answer (HTTP {response.status_code}) is not a JSON object",
                status=response.status_code,
            )
        return data

    # -- addresses ------------------------------------------------------------------------------------------
    def verify_address(self, address: dict[str, Any]) -> dict[str, Any]:
        """``POST /v2/addresses`` with ``verify_strict``: the verified Address (``id``, corrected fields,
        ``verifications``), or :class:`EasyPostRejected` ``ADDRESS.VERIFY.FAILURE`` naming the field."""
        response = self.http.request(
            "POST", "/v2/addresses", json={"address": address, "verify_strict": True}
        )
        return self._json(response, "verify address")

    # -- shipments ------------------------------------------------------------------------------------------
    def create_shipment(
        self,
        *,
        to_address: dict[str, Any],
        from_address: dict[str, Any],
        parcel: dict[str, Any],
        reference: str,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /v2/shipments``: the Shipment with its ``rates``; at most one per ``reference``.

        Before any retry of the create, the shipment the lost attempt may have made is looked up by
        ``reference`` and returned if found. :class:`NoRates` if EasyPost rated it with no carrier.
        """
        if not reference:
            raise ValueError("a shipment needs a reference (the chain key): it is how a lost create is found")
        body: dict[str, Any] = {
            "to_address": to_address,
            "from_address": from_address,
            "parcel": parcel,
            "reference": reference,
        }
        if options:
            body["options"] = options
        since = datetime.fromtimestamp(self.clock(), UTC) - LOOKUP_SKEW
        guard = _LookupBeforeRetry(
            lambda: self.find_shipment_by_reference(reference, created_after=since), self.http.classify
        )
        try:
            response = self.http.request(
                "POST", "/v2/shipments", json={"shipment": body}, classify=guard.classify, throttle=guard
            )
        except _AlreadyCreated as found:
            log.info(
                "easypost: the lost create of %s had made shipment %s", reference, found.shipment.get("id")
            )
            shipment = found.shipment
        else:
            shipment = self._json(response, "create shipment")
        if not shipment.get("rates"):
            select_rate(shipment)  # raises NoRates with the carriers' messages
        return shipment

    def get_shipment(self, shipment_id: str) -> dict[str, Any]:
        """``GET /v2/shipments/{id}`` (:class:`EasyPostRejected` ``NOT_FOUND`` for an unknown id)."""
        return self._json(self.http.request("GET", f"/v2/shipments/{shipment_id}"), "get shipment")

    def list_shipments(
        self,
        *,
        page_size: int = LIST_PAGE_SIZE,
        before_id: str | None = None,
        start_datetime: datetime | None = None,
        purchased: bool | None = None,
    ) -> dict[str, Any]:
        """One page of ``GET /v2/shipments``, newest first: ``{"shipments": [...], "has_more": bool}``."""
        params: dict[str, Any] = {"page_size": page_size}
        if before_id:
            params["before_id"] = before_id
        if start_datetime is not None:
            params["start_datetime"] = _iso(start_datetime)
        if purchased is not None:
            params["purchased"] = "true" if purchased else "false"
        return self._json(self.http.request("GET", "/v2/shipments", params=params), "list shipments")

    def iter_shipments(self, *, created_after: datetime) -> Iterator[dict[str, Any]]:
        """Every shipment created since ``created_after``, newest first, page by page (``before_id``)."""
        before_id: str | None = None
        while True:
            page = self.list_shipments(before_id=before_id, start_datetime=created_after)
            shipments = [s for s in page.get("shipments") or [] if isinstance(s, dict)]
            for s in shipments:
                created = _parse_time(s.get("created_at"))
                if created is not None and created < created_after:
                    return  # past the window (should start_datetime be ignored, this still ends the walk)
                yield s
            if not page.get("has_more") or not shipments:
                return
            before_id = str(shipments[-1]["id"])

    def find_shipment_by_reference(self, reference: str, *, created_after: datetime) -> dict[str, Any] | None:
        """The shipment whose ``reference`` is exactly ``reference``, created since ``created_after``, or None.

        EasyPost has no filter by reference (docs/SOURCES.md §4.5): the list is paged newest first back to
        ``created_after``. Should two ever match, the one with a label wins, else the oldest.
        """
        matches = [
            s for s in self.iter_shipments(created_after=created_after) if s.get("reference") == reference
        ]
        if not matches:
            return None
        bought = [s for s in matches if s.get("postage_label") or s.get("selected_rate")]
        if len(matches) > 1:
            log.warning("easypost: %d shipments carry reference %s", len(matches), reference)
        return (bought or matches)[-1]  # the list is newest first

    def rerate(self, shipment_id: str) -> list[dict[str, Any]]:
        """``POST /v2/shipments/{id}/rerate``: fresh rates for a shipment (e.g. one created when none rated)."""
        data = self._json(self.http.request("POST", f"/v2/shipments/{shipment_id}/rerate"), "rerate shipment")
        rates = data.get("rates")
        return [r for r in rates if isinstance(r, dict)] if isinstance(rates, list) else []

    def buy(self, shipment_id: str, rate_id: str) -> dict[str, Any]:
        """``POST /v2/shipments/{id}/buy``: the Shipment with ``tracking_code``, ``postage_label.label_url`` and
        ``selected_rate``. Idempotent in effect: a shipment already bought is returned as it is."""
        try:
            response = self.http.request(
                "POST", f"/v2/shipments/{shipment_id}/buy", json={"rate": {"id": rate_id}}
            )
        except EasyPostRejected as err:
            if err.code != POSTAGE_EXISTS:
                raise
            log.info("easypost: shipment %s already has a label; returning it", shipment_id)
            return self.get_shipment(shipment_id)
        return self._json(response, "buy shipment")

    def refund(self, shipment_id: str) -> dict[str, Any]:
        """``POST /v2/shipments/{id}/refund``: the Shipment with ``refund_status`` (``submitted`` at first).
        Idempotent in effect: a refund already submitted or done is returned as it is."""
        try:
            response = self.http.request("POST", f"/v2/shipments/{shipment_id}/refund")
        except EasyPostRejected as err:
            if err.code is None or err.status in (401, 403, 404):
                raise
            shipment = self.get_shipment(shipment_id)
            if shipment.get("refund_status") in REFUND_DONE:
                return shipment
            raise
        return self._json(response, "refund shipment")
