"""What every quality check returns, and the small helpers the checks share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, overload

from integration_assets.contracts.spec import all_contracts, known_entities
from integration_assets.policies import CheckSeverity

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one quality check over the warehouse.

    ``passed`` is False for a failure *and* for a skip: a check that could not be evaluated (a table it
    needs does not exist yet) must not look like a pass. ``skipped`` tells the two apart; the Dagster layer
    reports a skip as a WARN result whose description starts with "Not evaluated", and alerts ignore it.
    ``metadata`` holds ids, counts and non-PII samples only (it is shown in the Dagster UI).
    """

    passed: bool
    severity: CheckSeverity
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def status(self) -> Status:
        if self.skipped:
            return "skipped"
        return "passed" if self.passed else "failed"

    @classmethod
    def ok(cls, description: str, severity: CheckSeverity = "WARN", /, **metadata: Any) -> CheckOutcome:
        return cls(True, severity, description, metadata)

    @classmethod
    def fail(cls, severity: CheckSeverity, description: str, /, **metadata: Any) -> CheckOutcome:
        return cls(False, severity, description, metadata)

    @classmethod
    def skip(cls, reason: str, /, **metadata: Any) -> CheckOutcome:
        return cls(
            False,
            "WARN",
            f"Not evaluated: {reason}",
            {"skipped": True, "skip_reason": reason, **metadata},
            skipped=True,
        )


_RANK = {"WARN": 0, "ERROR": 1}


def worst(severities: Iterable[CheckSeverity], default: CheckSeverity = "WARN") -> CheckSeverity:
    """The most severe of ``severities`` (ERROR beats WARN)."""
    found = list(severities)
    return max(found, key=_RANK.__getitem__) if found else default


def combine(parts: Mapping[str, CheckOutcome], severity_if_passed: CheckSeverity = "WARN") -> CheckOutcome:
    """One outcome for a table fed by several source entities: fails if any part fails (worst severity)."""
    if len(parts) == 1:
        return next(iter(parts.values()))
    failed = {k: o for k, o in parts.items() if not o.passed and not o.skipped}
    skipped = {k: o for k, o in parts.items() if o.skipped}
    metadata = {k: dict(o.metadata) for k, o in parts.items()}
    text = " | ".join(f"{k}: {o.description}" for k, o in parts.items())
    if failed:
        return CheckOutcome(False, worst(o.severity for o in failed.values()), text, metadata)
    if skipped and len(skipped) == len(parts):
        return CheckOutcome(False, "WARN", text, {"skipped": True, **metadata}, skipped=True)
    return CheckOutcome(True, severity_if_passed, text, metadata)


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive timestamps (we only write UTC); Postgres returns them in the session zone."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def entities_for_table(table: str) -> list[tuple[str, str]]:
    """(system, entity) of every inbox folder whose contracts load ``table``."""
    return [(s, e) for s, e, t in known_entities() if t == table]


def pii_columns(table: str) -> set[str]:
    """Canonical columns of ``table`` that some contract marks as PII: their values never go into metadata."""
    out: set[str] = set()
    for c in all_contracts():
        if c.target == table:
            out |= {f.to for f in c.fields.values() if f.pii}
    return out
