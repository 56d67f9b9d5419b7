"""The outbound steps, one per hop of the chain (docs/ARCHITECTURE.md, "The outbound flow"): the runner
looks a message's step up in ``STEPS`` by name.

``STEPS`` is built on first access: the steps render contracts (``mapping.outbound`` loads pandas and
pandera through ``contracts.spec``), and the read side (``outbound status``, ``trace``) imports
``steps.base`` without needing any step.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration_assets.outbound.steps.base import Step

__all__ = ["STEPS"]


@functools.cache
def _steps() -> dict[str, Step]:
    # lazy: keeps the contract renderer (pandas, pandera) out of `outbound status`, saves ~3.3 s (measured with -X importtime)
    from integration_assets.outbound.steps.compensate import CompensateStep
    from integration_assets.outbound.steps.label import EasyPostLabelStep
    from integration_assets.outbound.steps.odoo_tracking import OdooTrackingStep
    from integration_assets.outbound.steps.order import OdooOrderStep
    from integration_assets.outbound.steps.tracking import HubSpotTrackingStep
    from integration_assets.outbound.steps.writeback import HubSpotWritebackStep

    steps: tuple[Step, ...] = (
        OdooOrderStep(),
        EasyPostLabelStep(),
        OdooTrackingStep(),
        HubSpotWritebackStep(),
        HubSpotTrackingStep(),
        CompensateStep(),
    )
    return {step.name: step for step in steps}


def __getattr__(name: str) -> Any:
    if name == "STEPS":
        return _steps()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
