"""The webhook receiver: verify, enqueue durably, answer. It never calls a downstream system.

The reasoning: docs/DESIGN.md, "The webhook receiver (webhooks/)".
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from integration_assets.dead_letters.store import write_event_dead_letters
from integration_assets.observability.metrics import WebhookMetrics
from integration_assets.providers import PROVIDERS
from integration_assets.providers.base import Provider
from integration_assets.queue import Queue, open_queue
from integration_assets.settings import get_settings
from integration_assets.webhooks.enqueue import Enqueuer
from integration_assets.webhooks.metrics import metrics_route
from integration_assets.webhooks.receive import WebhookConfig, WebhookReceiver

log = logging.getLogger(__name__)


def create_app(
    *,
    queue_url: str | None = None,
    queue_factory: Callable[[], Queue] | None = None,
    config: WebhookConfig | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The receiver as an ASGI app, publishing to ``queue_url`` (default ``INTEGRATION_QUEUE_URL``), or to
    the queues ``queue_factory`` builds (called once in each publisher thread: it must return a new queue
    each time). One route per registered provider, as registered when the app is built. ``clock`` is for
    tests."""
    config = config or WebhookConfig.from_env()
    metrics = WebhookMetrics(PROVIDERS)
    url = queue_url or get_settings().queue_url
    make_queue = queue_factory or (lambda: open_queue(url))

    def publisher_queue() -> Queue:
        queue = make_queue()
        if queue.dead_letter_sink is None:  # a key collision is dead-lettered at publish (SQL queue)
            queue.dead_letter_sink = write_event_dead_letters
        return queue

    publisher = Enqueuer(
        publisher_queue,
        metrics,
        max_batch=config.max_batch,
        linger_s=config.batch_linger_s,
        max_pending=config.max_pending_requests,
        threads=config.publishers,
    )
    receiver = WebhookReceiver(config, publisher, metrics, clock)
    providers = list(PROVIDERS.values())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        missing = [p.name for p in providers if not config.configured(p.name)]
        if missing:
            log.warning("webhook secrets not set for %s: those endpoints answer 503", ", ".join(missing))
        publisher.start()
        yield
        await publisher.stop()

    def endpoint(provider: Provider) -> Callable[[Request], Any]:
        async def receive(request: Request) -> Response:
            return await receiver.handle(request, provider)

        return receive

    async def healthz(_request: Request) -> Response:
        alive = publisher.running or publisher.state == "idle"
        body = {
            "status": "ok" if alive else "down",
            "publisher": publisher.state,
            "providers": {p.name: config.configured(p.name) for p in providers},
        }
        if publisher.last_error:
            body["last_error"] = publisher.last_error[:300]
        return JSONResponse(body, status_code=200 if alive else 503)

    routes = [Route(p.path, endpoint(p), methods=["POST"]) for p in providers]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        metrics_route(metrics),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.publisher = publisher
    app.state.config = config
    return app
