"""The outbound steps, one per hop of the chain (docs/ARCHITECTURE.md, "The outbound flow"): the runner
looks a message's step up here by name."""

from __future__ import annotations

from integration_assets.outbound.steps.base import Step
from integration_assets.outbound.steps.compensate import CompensateStep
from integration_assets.outbound.steps.label import EasyPostLabelStep
from integration_assets.outbound.steps.odoo_tracking import OdooTrackingStep
from integration_assets.outbound.steps.order import OdooOrderStep
from integration_assets.outbound.steps.tracking import HubSpotTrackingStep
from integration_assets.outbound.steps.writeback import HubSpotWritebackStep

STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        OdooOrderStep(),
        EasyPostLabelStep(),
        OdooTrackingStep(),
        HubSpotWritebackStep(),
        HubSpotTrackingStep(),
        CompensateStep(),
    )
}

__all__ = ["STEPS"]
