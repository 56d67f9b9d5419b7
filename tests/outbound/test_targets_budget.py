"""Targets built from settings ask the shared API budget of their API with priority ``outbound``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from integration_assets.outbound.targets import Targets


def test_clients_from_settings_use_the_api_budget(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "token")
    for name, value in (("URL", "http://127.0.0.1:9"), ("DB", "db"), ("USERNAME", "u"), ("API_KEY", "k")):
        monkeypatch.setenv(f"ODOO_{name}", value)
    targets = Targets(budget_engine=engine)
    for api in ("hubspot", "odoo"):
        http = targets.get(api).http
        assert http.api_budget is not None and http.api_budget.api == api
        assert http.priority == "outbound"


def test_injected_clients_are_used_as_given(engine: sa.Engine) -> None:
    from integration_assets.connectors.hubspot.client import HubSpotClient

    client = HubSpotClient("token", "http://127.0.0.1:9")
    assert Targets(hubspot=client, budget_engine=engine).hubspot.http.api_budget is None
