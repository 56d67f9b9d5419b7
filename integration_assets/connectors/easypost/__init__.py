"""EasyPost API v2 connector: :class:`EasyPostClient` (shipments, labels, refunds, address verification).

The fake that speaks the same wire format for tests and the demo is ``sandbox/fakes/easypost.py``.
"""

from integration_assets.connectors.easypost.client import DEFAULT_BASE_URL, EasyPostClient, select_rate
from integration_assets.connectors.easypost.errors import (
    EasyPostAuthError,
    EasyPostRejected,
    NoRates,
    classify_easypost,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "EasyPostAuthError",
    "EasyPostClient",
    "EasyPostRejected",
    "NoRates",
    "classify_easypost",
    "select_rate",
]
