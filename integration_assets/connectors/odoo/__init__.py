"""Odoo JSON-RPC connector: :class:`OdooClient` (live) and ``fake.FakeOdoo`` (a local server)."""

from integration_assets.connectors.odoo.client import (
    MODELS,
    OdooAccessDenied,
    OdooAccessError,
    OdooClient,
    OdooRpcError,
    classify_rpc_error,
    contract_fields,
)

__all__ = [
    "MODELS",
    "OdooAccessDenied",
    "OdooAccessError",
    "OdooClient",
    "OdooRpcError",
    "classify_rpc_error",
    "contract_fields",
]
