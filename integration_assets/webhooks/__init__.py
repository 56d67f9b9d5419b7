"""Webhook receiver (Starlette ASGI): verify provider signatures on the raw bytes, enqueue durably, answer.

Plain Python, no Dagster. ``create_app()`` builds the app; ``integration-assets webhooks serve`` runs it.
"""

from integration_assets.webhooks.app import create_app
from integration_assets.webhooks.receive import WebhookConfig

__all__ = ["WebhookConfig", "create_app"]
