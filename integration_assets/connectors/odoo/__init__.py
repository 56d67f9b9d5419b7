"""Odoo JSON-RPC connector: :class:`OdooClient` (pulls), :class:`OdooWriter` (the outbound chain's writes), both
over the transport in ``rpc.py``. The local fake is ``integration_assets.sandbox.fakes.odoo.FakeOdoo``."""

from integration_assets.connectors.odoo.client import (
    MODELS,
    OdooAccessDenied,
    OdooAccessError,
    OdooClient,
    OdooRpcError,
    classify_rpc_error,
    contract_fields,
)
from integration_assets.connectors.odoo.rpc import OdooWriteUnconfirmed
from integration_assets.connectors.odoo.writer import OdooBadIdentifier, OdooWriter

__all__ = [
    "MODELS",
    "OdooAccessDenied",
    "OdooAccessError",
    "OdooBadIdentifier",
    "OdooClient",
    "OdooRpcError",
    "OdooWriteUnconfirmed",
    "OdooWriter",
    "classify_rpc_error",
    "contract_fields",
]
