"""The outbound flow's own failures (docs/ARCHITECTURE.md, "The outbound flow").

Every failure of a step is transient or terminal (``integration_assets.errors``): the connectors raise
theirs (``RetriesExhausted``, ``OdooRpcError``, ``EasyPostRejected``, ``HubSpotRejected``,
``OutboundContractViolation``); a step raises these when the problem is its own input::

    OutboundError
    ├── StepRejected (terminal)      dead letter stage ``outbound`` with ``check_name`` and ``field``
    │   ├── BadInput                 the deal cannot make an order (no company, no lines, unknown SKU, ...)
    │   └── NeedsReview              the policy holds the chain for a person (amount changed, cancelled
    │                                after the label with ``cancel_after_label: review``)
    └── StepUnavailable (transient)  try again later (a target answered "not yet")
"""

from __future__ import annotations

from integration_assets.errors import IntegrationError, TerminalError, TransientError

# What a dead letter of stage ``outbound`` says went wrong (its ``check_name``).
CHECK_TARGET_REJECTED = "target_rejected"
CHECK_CONTRACT = "contract"
CHECK_NEEDS_REVIEW = "needs_review"
CHECK_AMOUNT_CHANGED = "amount_changed"
CHECK_BAD_INPUT = "bad_input"
CHECK_ATTEMPTS = "max_attempts"


class OutboundError(IntegrationError):
    """Base of the outbound flow's own errors."""


class StepRejected(OutboundError, TerminalError):
    """A permanent failure of a step: dead-lettered at once, with what to fix."""

    def __init__(
        self,
        reason: str,
        *,
        check_name: str = CHECK_TARGET_REJECTED,
        field: str | None = None,
        contract: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.check_name = check_name
        self.field = field
        self.contract = contract


class BadInput(StepRejected):
    """The business input cannot make the write (no company, no line items, unknown SKU, bad quantity, a
    currency the Odoo company does not use)."""

    def __init__(self, reason: str, *, field: str | None = None, contract: str | None = None) -> None:
        super().__init__(reason, check_name=CHECK_BAD_INPUT, field=field, contract=contract)


class NeedsReview(StepRejected):
    """Not an error of the input: the policy asks a person to decide (check ``needs_review`` or
    ``amount_changed``). The chain's status becomes ``review``."""

    def __init__(
        self, reason: str, *, check_name: str = CHECK_NEEDS_REVIEW, field: str | None = None
    ) -> None:
        super().__init__(reason, check_name=check_name, field=field)


class StepUnavailable(OutboundError, TransientError):
    """Retry later: the step could not do its work now, and nothing is wrong with the input."""
