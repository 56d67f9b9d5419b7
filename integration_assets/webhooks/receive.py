"""One request: verify it with its provider's declaration (``integration_assets.providers``), build its
messages, enqueue them, answer. The checks, in order, are in the table of ``webhooks.app``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.providers import PROVIDERS
from integration_assets.providers.base import (
    DEFAULT_TOLERANCE_S,
    PayloadError,
    Provider,
    SignatureError,
    SignedRequest,
)
from integration_assets.queue import REJECT_CHECK_HEADER, REJECT_REASON_HEADER, Message, QueueError
from integration_assets.queue.keys import CONTENT_HEADER, content_fingerprint
from integration_assets.settings import get_settings
from integration_assets.webhooks.enqueue import Enqueuer, Overloaded
from integration_assets.webhooks.limits import DEFAULT_MAX_JSON_DEPTH, Rejected, parse_json, read_body

# Request headers kept with every message: diagnostic and not secret. Signatures, tokens and cookies never
# (a provider adds its own with ``kept_headers``).
KEPT_HEADERS = ("content-type", "user-agent", "x-request-id")


@dataclass(frozen=True)
class WebhookConfig:
    """Receiver settings. Secrets (provider name -> its active secrets) come only from the environment
    (each provider's ``secret_vars``) and are never logged or shown."""

    secrets: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    max_body_bytes: int = 1 << 20
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    tolerance_s: float = DEFAULT_TOLERANCE_S
    # The whole body must arrive within this, counted from the request's headers: a client that dribbles
    # its body gets 408 and its connection is closed, instead of holding a connection and a task for ever.
    body_timeout_s: float = 10.0
    # scheme://host[:port] a provider posts to, when it differs from what the server sees (TLS proxy).
    public_url: str | None = None
    enqueue_timeout_s: float = 30.0
    max_batch: int = 500
    batch_linger_s: float = 0.001
    max_pending_requests: int = 10_000
    # Publisher threads, each with its own connection: while one waits for the broker's confirms of its
    # batch, the next publishes the requests that arrived meanwhile.
    publishers: int = 2

    @classmethod
    def from_env(cls, **overrides: Any) -> WebhookConfig:
        s = get_settings()
        values: dict[str, Any] = {
            "secrets": {name: p.secrets(s) for name, p in PROVIDERS.items()},
            "max_body_bytes": s.webhook_max_bytes,
            "public_url": s.webhook_public_url,
            "publishers": max(1, s.webhook_publishers),
            "body_timeout_s": s.webhook_body_timeout_seconds,
        }
        values.update(overrides)
        return cls(**values)

    def configured(self, provider: str) -> bool:
        return bool(self.secrets.get(provider))


def provider_messages(
    provider: Provider, doc: Any, body: bytes, headers: Mapping[str, str], received_at: datetime
) -> list[Message]:
    """The queue messages of a verified, parsed delivery: one per event, each with its content fingerprint
    (``queue.keys``). An element the provider says is not an event is keyed by its content and marked
    (``x-receiver-check``/``x-receiver-reason``): the drain dead-letters it with that reason."""
    try:
        events = provider.events(doc, body)
    except PayloadError as exc:
        raise Rejected(400, "invalid_payload", str(exc)) from exc
    messages = []
    for event in events:
        fingerprint = content_fingerprint(event.doc, provider.volatile_fields)
        kept = {**headers, **event.headers, CONTENT_HEADER: fingerprint}
        key = event.key
        if event.invalid is not None:
            kept[REJECT_CHECK_HEADER] = "invalid_payload"
            kept[REJECT_REASON_HEADER] = event.invalid
            # Keyed by content: a redelivered batch gives the same key, so its dead letter is not doubled.
            key = f"{provider.name}:invalid:{fingerprint[:32]}"
        assert key is not None
        messages.append(Message(key, provider.name, event.event_type, event.body, kept, received_at))
    return messages


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=dict(headers or {}))


class WebhookReceiver:
    """Request handling, separated from routing so tests can drive it with their own queue."""

    def __init__(
        self,
        config: WebhookConfig,
        publisher: Enqueuer,
        metrics: WebhookMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.publisher, self.metrics, self.clock = config, publisher, metrics, clock

    def _signed_url(self, request: Request) -> str:
        """The URL as the provider signed it: behind a proxy, the public one."""
        if not self.config.public_url:
            return str(request.url)
        query = request.url.query
        return f"{self.config.public_url}{request.url.path}" + (f"?{query}" if query else "")

    async def verified_messages(self, request: Request, provider: Provider) -> list[Message]:
        """Everything up to (not including) the enqueue: the checks of the table in ``webhooks.app``."""
        cfg = self.config
        secrets = cfg.secrets.get(provider.name, ())
        if not secrets:
            raise Rejected(503, "not_configured", f"no {provider.name} webhook secret configured")
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise Rejected(415, "unsupported_media_type")
        if any(not request.headers.get(h) for h in provider.signature_headers):
            raise Rejected(400, "missing_signature")
        body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_s)
        received_at = datetime.now(UTC)
        signed = SignedRequest(request.method, self._signed_url(request), request.headers, body)
        try:
            extra = provider.verify(signed, secrets, tolerance_s=cfg.tolerance_s, clock=self.clock)
        except SignatureError as exc:
            raise Rejected(exc.status, exc.reason) from exc
        names = (*KEPT_HEADERS, *provider.kept_headers)
        kept = {name: request.headers[name][:256] for name in names if name in request.headers}
        doc = parse_json(body, cfg.max_json_depth)
        return provider_messages(provider, doc, body, {**kept, **extra}, received_at)

    async def handle(self, request: Request, provider: Provider) -> Response:
        name = provider.name
        self.metrics.received.labels(name).inc()
        try:
            messages = await self.verified_messages(request, provider)
        except Rejected as exc:
            self.metrics.rejected.labels(name, exc.reason).inc()
            # The rest of a body that timed out is not worth waiting for: close the connection after the 408.
            return _error(exc.status, exc.reason, {"Connection": "close"} if exc.status == 408 else None)
        except ClientDisconnect:
            self.metrics.rejected.labels(name, "client_disconnected").inc()
            return _error(400, "client_disconnected")
        try:
            await self.publisher.enqueue(name, messages, self.config.enqueue_timeout_s)
        except Overloaded:
            self.metrics.rejected.labels(name, "overloaded").inc()
            return _error(503, "overloaded", {"Retry-After": "5"})
        except QueueError:
            # Logged by the publisher thread (once per batch, not once per request).
            self.metrics.rejected.labels(name, "queue_unavailable").inc()
            return _error(503, "queue_unavailable", {"Retry-After": "30"})
        invalid = sum(1 for m in messages if REJECT_CHECK_HEADER in m.headers)
        self.metrics.accepted.labels(name).inc()
        self.metrics.events.labels(name).inc(len(messages) - invalid)
        if invalid:
            self.metrics.invalid_elements.labels(name).inc(invalid)
            return JSONResponse({"accepted": len(messages) - invalid, "dead_lettered": invalid})
        return JSONResponse({"accepted": len(messages)})
