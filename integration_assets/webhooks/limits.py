"""The receiver's caps on what a request may cost before it is verified: body size, body time, JSON depth.

Every refusal is a ``Rejected`` carrying the HTTP status and the ``reason`` label of the rejected-requests
metric (the table in ``webhooks.app``).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.requests import Request

from integration_assets.errors import TerminalError

# Deeper than any provider payload (Stripe objects nest < 10 levels); far below what blows Python's stack.
DEFAULT_MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class Rejected(TerminalError):
    """A request refused before anything was enqueued."""

    def __init__(self, status: int, reason: str, detail: str = "") -> None:
        super().__init__(f"{status} {reason}: {detail}" if detail else f"{status} {reason}")
        self.status, self.reason = status, reason


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Parse a UTF-8 JSON body, refusing nesting deeper than ``max_depth`` before the parser sees it.

    Python's parser recurses per level, so depth is measured first, iteratively: strings are blanked out
    with one regex pass, then only the bracket bytes are walked (a 100k-deep body stops at level 65)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, "invalid_json", "body is not UTF-8") from exc
    # Fewer opening brackets than the limit, strings included, cannot nest deeper: the usual case.
    if body.count(b"[") + body.count(b"{") > max_depth:
        depth = 0
        for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
            if byte in (0x5B, 0x7B):  # [ {
                depth += 1
                if depth > max_depth:
                    raise Rejected(400, "too_deep", f"JSON nested deeper than {max_depth}")
            else:
                depth -= 1
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejected(400, "invalid_json", "body is not JSON") from exc


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, arriving within ``timeout_s`` of the request's headers: a
    client that dribbles its body gets 408 instead of holding a connection and a task for ever."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Rejected(400, "bad_content_length")
        if int(length) > limit:
            raise Rejected(413, "too_large", f"Content-Length {length} > {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    # Stop reading here: the rest of the body is never buffered.
                    raise Rejected(413, "too_large", f"body > {limit} bytes")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise Rejected(408, "body_timeout", f"body not received within {timeout_s:g}s") from exc
    return b"".join(chunks)
