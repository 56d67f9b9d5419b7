"""Keyset paging over a provider query sorted by modified time (HubSpot search, Odoo ``search_read``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from integration_assets.connectors._retry import ConnectorError
from integration_assets.errors import TerminalError


class PagingStuck(ConnectorError, TerminalError):
    """More records share one version value than the provider lets a single query page through."""


def ascending_pages(
    fetch: Callable[[Any, str | None], tuple[list[dict[str, Any]], str | None]],
    *,
    start: Any,
    version: Callable[[dict[str, Any]], Any],
    ident: Callable[[dict[str, Any]], str],
    max_token: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Every record of a query sorted ascending by ``version`` (a modified time), page by page.

    ``fetch(lower, token)`` returns one page of the records whose version is ``>= lower`` (all records when
    ``lower`` is None), ascending, starting at the provider's page token (None = the first page), and the token
    of the next page (None = this was the last).

    After each page the query restarts from the last version seen instead of following the token (keyset
    paging): the result never goes deep enough to hit a cap on a query's results (HubSpot search: 10,000) and
    a record that changes during the pull moves *ahead* of the reader instead of shifting offsets under it
    (with offsets, one unchanged record would be skipped per change). Records at exactly the restart value
    come back once more and are dropped by id. The provider's token is only followed through a run of more
    records with one equal version than fit in a page; past ``max_token`` that is :class:`PagingStuck`.
    """
    lower = start
    seen_at_lower: set[str] = set()
    token: str | None = None
    while True:
        records, next_token = fetch(lower, token)
        fresh = [
            r
            for r in records
            if not (lower is not None and version(r) == lower and ident(r) in seen_at_lower)
        ]
        if fresh:
            yield fresh
        if not records or next_token is None:
            return
        last = version(records[-1])
        if lower is None or last > lower:
            lower, token = last, None
            seen_at_lower = {ident(r) for r in records if version(r) == last}
        else:  # a whole page at the restart value: page through it in this query
            seen_at_lower.update(ident(r) for r in records)
            if max_token is not None and next_token.isdigit() and int(next_token) >= max_token:
                raise PagingStuck(
                    f"more than {max_token} records share the version {lower!r}; cannot page past it"
                )
            token = next_token
