"""What a step is: the message it consumes, the context it runs in and the result it hands the runner
(docs/ARCHITECTURE.md, "The outbound flow").

A step does one hop of a chain (one target system) and nothing else: the runner (``outbound/runner.py``)
writes the ledger, the chain's columns and the follow-up outbox rows, and settles the queue. A step looks the
target up before it creates (``ctx.previously_started(key)`` or ``attempt > 1``): that is what makes a retry
after a lost response find the object instead of creating a second one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlalchemy as sa

from integration_assets.outbound import ledger

if TYPE_CHECKING:
    from integration_assets.outbound.targets import Targets
    from integration_assets.policies import OutboundPolicy

StepName = Literal[
    "odoo_order", "easypost_label", "odoo_tracking", "hubspot_writeback", "hubspot_tracking", "compensate"
]
TargetName = Literal["odoo", "easypost", "hubspot"]
Outcome = Literal["sent", "found", "skipped", "updated", "flagged", "waiting"]


@dataclass(frozen=True)
class OutboxMessage:
    """One outbox row as the step queue carries it (the queue message's JSON body). ``payload``: ids only."""

    key: str
    topic: str
    step: str
    chain_id: str
    payload: dict[str, Any]

    @property
    def generation(self) -> int:
        return int(self.payload.get("generation") or 1)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> OutboxMessage:
        d = json.loads(text)
        return cls(
            key=str(d["key"]),
            topic=str(d["topic"]),
            step=str(d["step"]),
            chain_id=str(d["chain_id"]),
            payload=dict(d.get("payload") or {}),
        )


@dataclass
class StepContext:
    """What a step gets: the warehouse (reads), the target clients, the policy, and whether this is a dry run
    (then: reads and contract renders only, no write call; the runner writes nothing)."""

    engine: sa.Engine
    targets: Targets
    policy: OutboundPolicy
    dry_run: bool
    now: Callable[[], datetime]

    def ledger_key(self, step: str, chain_id: str, sub: str = "") -> str:
        """``<step>:<chain_id>[:<sub>]``: the deterministic key of one outbound write."""
        return ledger.ledger_key(step, chain_id, sub)

    # Keys the runner started for the first time for this message (no earlier attempt reached the call).
    fresh_keys: frozenset[str] = frozenset()

    def previously_started(self, key: str) -> bool:
        """Whether an earlier attempt may have reached the target with this key (its ledger row existed before
        this attempt): the target may hold what it created, so look it up before creating."""
        if key in self.fresh_keys:
            return False
        with self.engine.connect() as conn:
            return ledger.get(conn, key) is not None

    def chain(self, chain_id: str) -> dict[str, Any] | None:
        """The chain's row (``outbound_chains``) as a dict, or None before its first step."""
        with self.engine.connect() as conn:
            return ledger.read_chain(conn, chain_id)


@dataclass
class StepResult:
    """What one run of a step did. ``follow_ups``: (topic, step, key, payload) outbox rows written in the
    ledger's transaction. ``flagged``: the runner dead-letters the message with ``check_name`` and ``reason``
    (a review the policy asks for) and settles it. ``waiting``: nothing to do yet (a payment the label waits
    for); the next message for the chain runs the step again."""

    outcome: Outcome
    target_id: str | None = None
    target_ref: str | None = None
    chain_updates: dict[str, Any] = field(default_factory=dict)
    follow_ups: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    contract_version: str | None = None
    preview: list[dict[str, Any]] = field(default_factory=list)
    check_name: str | None = None
    reason: str | None = None
    field_name: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # ids only: kept in the ledger's outcome_detail


class Step(Protocol):
    """One hop. ``target``: which API's concurrency it uses (``policy.concurrency[target]``)."""

    name: str
    target: str

    def run(self, ctx: StepContext, msg: OutboxMessage, attempt: int) -> StepResult: ...


def ledger_sub(step: Step, msg: OutboxMessage) -> str:
    """The sub-key of ``msg``'s write for ``step``: the step's own ``ledger_sub(msg)`` when it has one
    (a step that writes once per event, e.g. every tracking update), else the chain's generation (empty
    for the first), so every message about one chain generation shares one ledger row."""
    custom = getattr(step, "ledger_sub", None)
    if callable(custom):
        return str(custom(msg) or "")
    return "" if msg.generation <= 1 else str(msg.generation)
