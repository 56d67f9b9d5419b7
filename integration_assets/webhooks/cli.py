"""``integration-assets webhooks …``: run the webhook receiver."""

from __future__ import annotations

import click


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
    import uvicorn

    from integration_assets.webhooks.app import create_app

    uvicorn.run(
        create_app(), host=host, port=port, log_level=log_level, access_log=access_log, server_header=False
    )
