"""``integration-assets webhooks …``: run the webhook receiver."""

from __future__ import annotations

from typing import Any

import click

# Connection limits: an idle keep-alive connection is closed after TIMEOUT_KEEP_ALIVE_S; beyond
# LIMIT_CONCURRENCY connections or tasks new requests get 503 (the provider retries) instead of queueing in
# memory; a request's header block must arrive within server.HEADER_TIMEOUT_S and be at most
# server.MAX_HEADER_BYTES (ReceiverProtocol; MAX_INCOMPLETE_EVENT_BYTES is the same cap should uvicorn's h11
# protocol be chosen instead); a body that dribbles in is cut by the app (WebhookConfig.body_timeout_s: 408).
TIMEOUT_KEEP_ALIVE_S = 5
LIMIT_CONCURRENCY = 1000
MAX_INCOMPLETE_EVENT_BYTES = 64 * 1024


def server_options(
    *, limit_concurrency: int = LIMIT_CONCURRENCY, header_timeout_s: float | None = None
) -> dict[str, Any]:
    """uvicorn.Config keyword arguments of the receiver (the CLI and the tests run the same server)."""
    # lazy: keeps Starlette and uvicorn out of --help, saves 1510 ms
    from integration_assets.webhooks.server import ReceiverProtocol

    protocol: type[ReceiverProtocol] = ReceiverProtocol
    if header_timeout_s is not None:
        protocol = type("ReceiverProtocol", (ReceiverProtocol,), {"header_timeout_s": header_timeout_s})
    return {
        "http": protocol,
        "timeout_keep_alive": TIMEOUT_KEEP_ALIVE_S,
        "limit_concurrency": limit_concurrency,
        "h11_max_incomplete_event_size": MAX_INCOMPLETE_EVENT_BYTES,
        "server_header": False,
    }


@click.group("webhooks")
def webhooks() -> None:
    """Receive signed Stripe/HubSpot/EasyPost webhooks and enqueue them durably."""


@webhooks.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback by default)."
)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="Log every request line (costs throughput under load).",
)
def serve(host: str, port: int, log_level: str, access_log: bool) -> None:
    """Serve POST /webhooks/{stripe,hubspot,easypost}, GET /healthz and GET /metrics with uvicorn.

    Secrets come from STRIPE_WEBHOOK_SECRET, HUBSPOT_CLIENT_SECRET and EASYPOST_WEBHOOK_SECRET; events go
    to INTEGRATION_QUEUE_URL (the SQL queue needs `integration-assets db upgrade` first)."""
    # lazy: keeps Starlette and uvicorn out of --help, saves 1510 ms
    from integration_assets.webhooks.server import serve as run

    run(host=host, port=port, log_level=log_level, access_log=access_log, **server_options())
