"""Stripe API v1 connector for the events pull: :class:`StripeClient` (``/v1/events`` by ``created`` window,
and the PaymentIntent, charge and refund lists for ranges older than the 30 days Stripe keeps events).

The fake that speaks the same wire format for tests and the demo is ``sandbox/fakes/stripe.py``.
"""

from integration_assets.connectors.stripe.client import (
    DEFAULT_BASE_URL,
    EVENT_RETENTION,
    OBJECT_LISTS,
    StripeClient,
    Window,
)
from integration_assets.connectors.stripe.errors import StripeAuthError, StripeRejected, classify_stripe

__all__ = [
    "DEFAULT_BASE_URL",
    "EVENT_RETENTION",
    "OBJECT_LISTS",
    "StripeAuthError",
    "StripeClient",
    "StripeRejected",
    "Window",
    "classify_stripe",
]
