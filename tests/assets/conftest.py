"""The API fakes (real HTTP servers on 127.0.0.1) for the partitioned pull assets."""

from tests.connectors.conftest import hubspot, odoo

__all__ = ["hubspot", "odoo"]
