"""HubSpot CRM v3: contacts, companies and deals, pulled as the raw records the ``*_api`` contracts map.

Wire format: docs/SOURCES.md §1. Two ways in:

- **Full pull** (no cursor yet): ``GET /crm/v3/objects/{type}?limit=100&after=…&properties=…&associations=companies``
  until a page has no ``paging.next``. Pages come in id order, not modified order.
- **Incremental pull**: ``POST /crm/v3/objects/{type}/search`` filtered ``{modified} GTE <ms>`` and sorted
  ascending by it (``lastmodifieddate`` for contacts, ``hs_lastmodifieddate`` for companies and deals).
  A search query stops at 10,000 results (paging further is a 400), so the query restarts from the last
  modified value seen (:func:`~integration_assets.connectors._paging.ascending_pages`). Search results carry no
  associations: they are read per page from ``POST /crm/v3/associations/{type}/companies/batch/read``
  (one call per page; the v3 associations API, documented by HubSpot, not in docs/SOURCES.md). Search is
  limited to 5 requests/s per account, so search calls are spaced by at least 0.2 s. Errors and rate limits:
  ``errors.py``.
- **Partition window** (:meth:`HubSpotClient.pull_window`): the same search with ``GTE`` start and ``LT`` end (a
  record modified exactly at midnight belongs to the later day only); a window whose ``total`` passes the
  10,000 cap is split in halves, recursively. Records archived in the window follow.

``properties`` are the ones the API contracts of the entity map (``properties.<name>`` fields) plus the
modified date, and ``associations`` the ``associations.<type>.results`` fields: a contract edit that maps a
new property is picked up by the next pull, without a code change.

"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

from integration_assets.connectors._http import DEFAULT_TIMEOUT, HttpClient, HttpConnector, StatusRecorder
from integration_assets.connectors._paging import ascending_pages
from integration_assets.connectors._retry import (
    HttpRetry,
    RequestRejected,
    RetryBudget,
    Throttle,
)
from integration_assets.connectors.hubspot.errors import (
    HubSpotAuthError,
    classify_hubspot,
    classify_hubspot_write,
    json_body,
)
from integration_assets.connectors.landing import Pull
from integration_assets.contracts.spec import contracts_for
from integration_assets.settings import get_settings

SYSTEM = "hubspot"
DEFAULT_BASE_URL = "https://api.hubapi.com"
OBJECT_TYPES: tuple[str, ...] = (
    "companies",
    "contacts",
    "deals",
)  # companies first: what the others point to
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
# List endpoints allow at most 100 per page (docs/SOURCES.md §1.1); search allows 200, 100 keeps pages even.
PAGE_LIMIT = 100
SEARCH_RESULT_CAP = 10_000  # results one search query can page through (docs/SOURCES.md §1.2)
SEARCH_MIN_INTERVAL = 0.2  # search: 5 requests/s per account (docs/SOURCES.md §1.2)
# The search index lags writes by seconds (docs/SOURCES.md §1.2): re-read that much before the watermark.
DEFAULT_OVERLAP = timedelta(minutes=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Line item properties the outbound order reads (docs/SOURCES.md §1.8).
LINE_ITEM_PROPERTIES = (
    "hs_sku",
    "name",
    "quantity",
    "price",
    "amount",
    "hs_line_item_currency_code",
    "hs_product_id",
)
ASSOCIATIONS_PAGE_LIMIT = 500  # v4 associations: "Limit 500 per call" (docs/SOURCES.md §1.8)
BATCH_READ_MAX = 100  # inputs per batch call (docs/SOURCES.md §1.7)


def contract_fields(object_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(properties, association types) the ``api`` contracts of ``object_type`` map, plus the modified date."""
    props: set[str] = {MODIFIED_PROPERTY[object_type]}
    assocs: set[str] = set()
    for c in contracts_for(SYSTEM, object_type):
        if c.variant != "api":
            continue
        for src in c.fields:
            head, _, rest = src.partition(".")
            if head == "properties" and rest:
                props.add(rest)
            elif head == "associations" and rest:
                assocs.add(rest.split(".")[0])
    return tuple(sorted(props)), tuple(sorted(assocs))


def to_ms(ts: datetime) -> int:
    """Epoch milliseconds (what search filters take), rounded down."""
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def _decimal(value: Any) -> Decimal | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _segment(value: str) -> str:
    """One path segment (an id from a message is never trusted to hold no slash)."""
    return quote(str(value), safe="")


def parse_hubspot_time(value: Any) -> int | None:
    """Epoch ms of a HubSpot datetime value: ISO-8601 (``2019-12-07T16:50:06.678Z``) or epoch ms digits."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return to_ms(ts)


class HubSpotClient(HttpConnector):
    """The live HubSpot CRM v3 connector (one per run; close it, or use it as a context manager)."""

    system = SYSTEM
    entities = OBJECT_TYPES

    def __init__(
        self,
        access_token: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: HttpRetry | None = None,
        budget: RetryBudget | None = None,
        recorder: StatusRecorder | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        page_limit: int = PAGE_LIMIT,
        search_result_cap: int = SEARCH_RESULT_CAP,
        search_min_interval: float = SEARCH_MIN_INTERVAL,
        overlap: timedelta = DEFAULT_OVERLAP,
    ) -> None:
        if not access_token:
            raise HubSpotAuthError("no HubSpot access token: set HUBSPOT_ACCESS_TOKEN (a private app token)")
        self.page_limit = page_limit
        self.search_result_cap = search_result_cap
        self.window_splits = 0  # windows split in halves because their search passed the result cap
        self.overlap = overlap
        self.http = HttpClient(
            SYSTEM,
            base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {access_token}"},
            transport=transport,
            timeout=timeout,
            retry=retry or HttpRetry(),
            budget=budget or RetryBudget(),
            classify=classify_hubspot,
            recorder=recorder,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),  # noqa: S311 - jitter
            secrets=(access_token,),
        )
        self._search_throttle = Throttle(search_min_interval, clock=monotonic, sleep=sleep)

    @classmethod
    def from_settings(cls, **kw: Any) -> HubSpotClient:
        """A client for HUBSPOT_ACCESS_TOKEN at HUBSPOT_BASE_URL; ``kw`` as for the constructor."""
        settings = get_settings()
        kw.setdefault("base_url", settings.hubspot_base_url)
        return cls(settings.hubspot_access_token or "", **kw)

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        data = json_body(response)
        if not data and response.content:
            raise RequestRejected(
                f"HubSpot {what}: the response is not a JSON object: {response.text[:200]!r}",
                status=response.status_code,
            )
        return data

    # -- list (full pull) --------------------------------------------------------------------------------
    def list_page(
        self,
        object_type: str,
        *,
        properties: Sequence[str],
        associations: Sequence[str] = (),
        after: str | None = None,
        archived: bool = False,
    ) -> dict[str, Any]:
        """One page of ``GET /crm/v3/objects/{object_type}``: live records, or the archived (deleted) ones."""
        params: dict[str, Any] = {"limit": self.page_limit, "archived": "true" if archived else "false"}
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = ",".join(associations)
        if after:
            params["after"] = after
        return self._json(
            self.http.request("GET", f"/crm/v3/objects/{object_type}", params=params), f"list {object_type}"
        )

    def iter_all(
        self,
        object_type: str,
        *,
        properties: Sequence[str],
        associations: Sequence[str] = (),
        archived: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every record, page by page, following ``paging.next.after`` to the last page."""
        after: str | None = None
        while True:
            data = self.list_page(
                object_type, properties=properties, associations=associations, after=after, archived=archived
            )
            results = list(data.get("results") or [])
            if results:
                yield results
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def iter_archived_since(
        self, object_type: str, since_ms: int | None, *, properties: Sequence[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """Deleted (archived) records whose ``archivedAt`` is at or after ``since_ms`` (all when None).

        The list has no filter and search does not return archived records, so every archived record is
        listed (HubSpot keeps them for 90 days) and the filter applies here."""
        for page in self.iter_all(object_type, properties=properties, archived=True):
            keep = [
                r
                for r in page
                if since_ms is None or (parse_hubspot_time(r.get("archivedAt")) or 0) >= since_ms
            ]
            if keep:
                yield keep

    def iter_archived_between(
        self, object_type: str, start_ms: int, end_ms: int, *, properties: Sequence[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """Deleted (archived) records whose ``archivedAt`` is in ``[start_ms, end_ms)`` (the list has no filter:
        every archived record is listed and the window applies here)."""
        for page in self.iter_all(object_type, properties=properties, archived=True):
            keep = [r for r in page if start_ms <= (parse_hubspot_time(r.get("archivedAt")) or 0) < end_ms]
            if keep:
                yield keep

    # -- search (incremental pull) -----------------------------------------------------------------------
    def search_page(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """One ``POST /crm/v3/objects/{object_type}/search`` (spaced to the 5 requests/s search limit)."""
        return self._json(
            self.http.request(
                "POST", f"/crm/v3/objects/{object_type}/search", json=body, throttle=self._search_throttle
            ),
            f"search {object_type}",
        )

    def modified_ms(self, object_type: str, record: dict[str, Any]) -> int:
        value = (record.get("properties") or {}).get(MODIFIED_PROPERTY[object_type])
        ms = parse_hubspot_time(value)
        if ms is None:
            ms = parse_hubspot_time(record.get("updatedAt"))
        # A deletion is a change at its own time (the contracts derive source_updated_at the same way).
        archived = parse_hubspot_time(record.get("archivedAt"))
        return max(ms or 0, archived or 0)

    def iter_modified_since(
        self,
        object_type: str,
        since: datetime,
        *,
        properties: Sequence[str],
        associations: Sequence[str] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        """Records modified at or after ``since``, ascending by modified date, with their associations."""
        prop = MODIFIED_PROPERTY[object_type]

        def fetch(lower: int, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            body: dict[str, Any] = {
                "filterGroups": [
                    {"filters": [{"propertyName": prop, "operator": "GTE", "value": str(lower)}]}
                ],
                "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                "properties": list(properties),
                "limit": self.page_limit,
            }
            if token is not None:
                body["after"] = token
            data = self.search_page(object_type, body)
            nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
            return list(data.get("results") or []), (str(nxt) if nxt is not None else None)

        for page in ascending_pages(
            fetch,
            start=to_ms(since),
            version=lambda r: self.modified_ms(object_type, r),
            ident=lambda r: str(r.get("id")),
            max_token=self.search_result_cap - self.page_limit + 1,
        ):
            for to_type in associations:
                self.attach_associations(object_type, to_type, page)
            yield page

    def iter_modified_between(
        self,
        object_type: str,
        start: datetime,
        end: datetime,
        *,
        properties: Sequence[str],
        associations: Sequence[str] = (),
    ) -> Iterator[list[dict[str, Any]]]:
        """Records modified in the half-open window ``[start, end)`` (``GTE`` start, ``LT`` end), with their
        associations; a record modified exactly at ``end`` belongs to the next window only.

        A query whose ``total`` passes the search cap (10,000: paging further is a 400) is split in two halves,
        recursively, down to one millisecond; each part is paged by modified date like
        :meth:`iter_modified_since`. :attr:`window_splits` counts the splits."""
        lo, hi = to_ms(start), to_ms(end)
        if hi <= lo:
            return
        for page in self._window_pages(object_type, lo, hi, properties):
            for to_type in associations:
                self.attach_associations(object_type, to_type, page)
            yield page

    def _window_body(
        self, object_type: str, lower: int, upper: int, properties: Sequence[str], token: str | None
    ) -> dict[str, Any]:
        prop = MODIFIED_PROPERTY[object_type]
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": prop, "operator": "GTE", "value": str(lower)},
                        {"propertyName": prop, "operator": "LT", "value": str(upper)},
                    ]
                }
            ],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": list(properties),
            "limit": self.page_limit,
        }
        if token is not None:
            body["after"] = token
        return body

    def _window_pages(
        self, object_type: str, lo: int, hi: int, properties: Sequence[str]
    ) -> Iterator[list[dict[str, Any]]]:
        first = self.search_page(object_type, self._window_body(object_type, lo, hi, properties, None))
        total = int(first.get("total") or 0)
        if total > self.search_result_cap and hi - lo > 1:
            mid = lo + (hi - lo) // 2
            self.window_splits += 1
            yield from self._window_pages(object_type, lo, mid, properties)
            yield from self._window_pages(object_type, mid, hi, properties)
            return
        cached: dict[str, Any] | None = first

        def fetch(lower: int, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
            nonlocal cached
            if cached is not None and lower == lo and token is None:
                data, cached = cached, None  # the query that gave the total is the first page
            else:
                data = self.search_page(
                    object_type, self._window_body(object_type, lower, hi, properties, token)
                )
            nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
            return list(data.get("results") or []), (str(nxt) if nxt is not None else None)

        yield from ascending_pages(
            fetch,
            start=lo,
            version=lambda r: self.modified_ms(object_type, r),
            ident=lambda r: str(r.get("id")),
            max_token=self.search_result_cap - self.page_limit + 1,
        )

    def read_associations(
        self, from_type: str, to_type: str, ids: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """``{id: [{"id", "type"}, …]}`` of the ``to_type`` objects associated with each of ``ids``."""
        if not ids:
            return {}
        data = self._json(
            self.http.request(
                "POST",
                f"/crm/v3/associations/{from_type}/{to_type}/batch/read",
                json={"inputs": [{"id": str(i)} for i in ids]},
            ),
            f"associations {from_type}->{to_type}",
        )
        out: dict[str, list[dict[str, Any]]] = {}
        for item in data.get("results") or []:
            src = str((item.get("from") or {}).get("id"))
            out.setdefault(src, []).extend(t for t in item.get("to") or [] if isinstance(t, dict))
        return out

    def attach_associations(self, object_type: str, to_type: str, records: list[dict[str, Any]]) -> None:
        """Give search results the ``associations`` member a list call would have had (none when empty)."""
        found = self.read_associations(object_type, to_type, [str(r.get("id")) for r in records])
        for r in records:
            items = found.get(str(r.get("id")))
            if items:
                r.setdefault("associations", {})[to_type] = {"results": items}

    # -- outbound: deal write-back and the deal's line items ------------------------------------------------
    def update_deal(self, deal_id: str, properties: Mapping[str, str]) -> dict[str, Any]:
        """``PATCH /crm/v3/objects/deals/{deal_id}`` with ``{"properties": …}``; the updated deal.

        Values are sent as strings (an empty string clears a property in HubSpot, so callers leave out what
        they do not mean to clear). Raises ``HubSpotRejected`` on a 400 VALIDATION_ERROR (permanent, with the
        property named), ``RetriesExhausted`` when 429/5xx/timeouts outlast the retries."""
        if not properties:
            raise ValueError("update_deal needs at least one property")
        body = {"properties": {str(k): "" if v is None else str(v) for k, v in properties.items()}}
        path = f"/crm/v3/objects/deals/{_segment(deal_id)}"
        return self._json(
            self.http.request("PATCH", path, json=body, classify=classify_hubspot_write), "update deal"
        )

    def get_deal(
        self, deal_id: str, properties: Sequence[str], *, associations: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``GET /crm/v3/objects/deals/{deal_id}``: the deal with ``properties`` (and ``associations``, e.g.
        ``("companies",)``), as HubSpot sends it (values are strings or null)."""
        params: dict[str, Any] = {"archived": "false"}
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = ",".join(associations)
        return self._json(
            self.http.request("GET", f"/crm/v3/objects/deals/{_segment(deal_id)}", params=params), "get deal"
        )

    def associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        """Ids of the ``to_type`` objects associated with one object (v4 associations, every page)."""
        ids: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": ASSOCIATIONS_PAGE_LIMIT}
            if after:
                params["after"] = after
            data = self._json(
                self.http.request(
                    "GET",
                    f"/crm/v4/objects/{from_type}/{_segment(from_id)}/associations/{to_type}",
                    params=params,
                ),
                f"associations {from_type}->{to_type}",
            )
            for item in data.get("results") or []:
                # toObjectId is a string in the current model, a JSON number in older payloads (§1.8).
                if isinstance(item, dict) and item.get("toObjectId") is not None:
                    ids.append(str(item["toObjectId"]))
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return list(dict.fromkeys(ids))

    def batch_read(
        self, object_type: str, ids: Sequence[str], properties: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """``{id: record}`` of ``POST /crm/v3/objects/{object_type}/batch/read`` (100 ids per call); ids HubSpot
        does not return (deleted meanwhile: a 207 with errors) are absent."""
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), BATCH_READ_MAX):
            chunk = ids[start : start + BATCH_READ_MAX]
            data = self._json(
                self.http.request(
                    "POST",
                    f"/crm/v3/objects/{object_type}/batch/read",
                    json={"properties": list(properties), "inputs": [{"id": str(i)} for i in chunk]},
                ),
                f"batch read {object_type}",
            )
            for rec in data.get("results") or []:
                if isinstance(rec, dict) and rec.get("id") is not None:
                    out[str(rec["id"])] = rec
        return out

    def deal_line_items(self, deal_id: str) -> list[dict[str, Any]]:
        """The deal's line items in association order: ``{id, sku, name, quantity, price, amount, currency,
        product_id}``; quantity, price and amount as Decimal (None when empty or not a number)."""
        ids = self.associated_ids("deals", deal_id, "line_items")
        if not ids:
            return []
        records = self.batch_read("line_items", ids, LINE_ITEM_PROPERTIES)
        items = []
        for i in ids:
            rec = records.get(i)
            if rec is None:
                continue
            props = rec.get("properties") or {}
            items.append(
                {
                    "id": i,
                    "sku": props.get("hs_sku") or None,
                    "name": props.get("name") or None,
                    "quantity": _decimal(props.get("quantity")),
                    "price": _decimal(props.get("price")),
                    "amount": _decimal(props.get("amount")),
                    "currency": props.get("hs_line_item_currency_code") or None,
                    "product_id": props.get("hs_product_id") or None,
                }
            )
        return items

    # -- Source --------------------------------------------------------------------------------------------
    def pull(self, entity: str, since: datetime | None) -> Pull:
        """The pages of one pull: the full list without ``since``, else the search from ``since`` on; then the
        records deleted (archived) since, which neither the list nor the search returns. The deletions come
        after the ascending search, so the pull as a whole is not ordered (the cursor moves at its end)."""
        if entity not in OBJECT_TYPES:
            raise ValueError(f"unknown HubSpot object type {entity!r}; one of {', '.join(OBJECT_TYPES)}")
        properties, associations = contract_fields(entity)
        deleted = self.iter_archived_since(
            entity, None if since is None else to_ms(since), properties=properties
        )
        if since is None:
            live = self.iter_all(entity, properties=properties, associations=associations)
        else:
            live = self.iter_modified_since(entity, since, properties=properties, associations=associations)
        return Pull(itertools.chain(live, deleted), ordered=False)

    def pull_window(self, entity: str, start: datetime, end: datetime) -> Iterator[list[dict[str, Any]]]:
        """The pages of one partition window ``[start, end)``: records modified in it (search), then the records
        deleted (archived) in it."""
        if entity not in OBJECT_TYPES:
            raise ValueError(f"unknown HubSpot object type {entity!r}; one of {', '.join(OBJECT_TYPES)}")
        properties, associations = contract_fields(entity)
        yield from self.iter_modified_between(
            entity, start, end, properties=properties, associations=associations
        )
        yield from self.iter_archived_between(entity, to_ms(start), to_ms(end), properties=properties)

    def record_id(self, entity: str, record: dict[str, Any]) -> str:
        return str(record.get("id"))

    def version_of(self, entity: str, record: dict[str, Any]) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.modified_ms(entity, record))
