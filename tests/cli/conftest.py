"""The command groups' tests reuse the fixtures of the layers they drive: the HubSpot/Odoo fakes for `pull`."""

from __future__ import annotations

from tests.connectors.conftest import hubspot, odoo

__all__ = ["hubspot", "odoo"]
