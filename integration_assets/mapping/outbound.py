"""Render a target payload from canonical values through an outbound contract, validated before any call.

``render("odoo/sale_order", canonical)`` picks the latest version of the contract (or ``version``), gives
every target field its value (a canonical key, a constant, a derivation, a value map, a default), converts
it (``as``), and checks the target's required fields. A required field missing or empty, a value outside
its map, a value that cannot be converted, or a non-positive quantity raises
:class:`OutboundContractViolation` (terminal: the step dead-letters it with the field named, and a contract
edit plus ``dlq replay`` completes it). Fields without a value that the target does not require are left
out of the payload, so a write never clears a value by accident. Format: docs/ARCHITECTURE.md, "Outbound
contracts".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from integration_assets.contracts.outbound import (
    OutboundContract,
    OutboundContractError,
    OutboundField,
    load_outbound_contract,
)
from integration_assets.errors import TerminalError

__all__ = [
    "OutboundContract",
    "OutboundContractError",
    "OutboundContractViolation",
    "OutboundPayload",
    "load_outbound_contract",
    "render",
]

_MISSING = object()


class OutboundContractViolation(TerminalError):
    """The canonical values cannot make a payload the target accepts; nothing was sent."""

    def __init__(self, contract: str, field: str, reason: str) -> None:
        super().__init__(f"{contract}: {field}: {reason}")
        self.contract = contract
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class OutboundPayload:
    """What to send (``values``) and the contract version that made it (``odoo/sale_order@v2``)."""

    values: dict[str, Any]
    contract: str
    # Versions of the contracts rendered for list items (``each``), e.g. ("odoo/sale_order_line@v1",).
    parts: tuple[str, ...] = field(default=())


def _https_url(value: Any) -> str:
    text = str(value).strip()
    return text if "://" in text else f"https://{text}"


DERIVATIONS: dict[str, Callable[[Any], Any]] = {
    "https_url": _https_url,
    "upper": lambda v: str(v).strip().upper(),
    "lower": lambda v: str(v).strip().lower(),
    "strip": lambda v: str(v).strip(),
}


def _empty(value: Any) -> bool:
    if value is None or value is _MISSING:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, list | tuple | dict) and not value


def _lookup(canonical: Mapping[str, Any], path: str) -> Any:
    current: Any = canonical
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _number(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _convert(value: Any, as_: str) -> Any:
    if as_ == "raw":
        return value
    if as_ == "string":
        if isinstance(value, bool):
            return "true" if value else "false"  # HubSpot booleans as property strings
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    if as_ == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError(f"{value!r} is not a boolean")
    number = _number(value)
    if as_ == "integer":
        if number != number.to_integral_value():
            raise ValueError(f"{value!r} is not a whole number")
        return int(number)
    return float(number)


def _set(values: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _get(values: Mapping[str, Any], path: str) -> Any:
    return _lookup(values, path)


def _field_value(
    contract: OutboundContract,
    target: str,
    spec: OutboundField,
    canonical: Mapping[str, Any],
    parts: list[str],
) -> Any:
    where = contract.id
    if spec.from_ is None:
        value: Any = spec.value
    else:
        value = _lookup(canonical, spec.from_)
        if not _empty(value) and spec.derive is not None:
            value = DERIVATIONS[spec.derive](value)
    if _empty(value):
        value = spec.default
    if _empty(value):
        return _MISSING
    if spec.each is not None:
        if not isinstance(value, list | tuple):
            raise OutboundContractViolation(
                where, target, f"expected a list for {spec.each}, got {type(value).__name__}"
            )
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise OutboundContractViolation(where, f"{target}[{i}]", "a list item is not an object")
            try:
                rendered = render(spec.each, item)
            except OutboundContractViolation as exc:
                raise OutboundContractViolation(
                    exc.contract, f"{target}[{i}].{exc.field}", exc.reason
                ) from exc
            parts.extend(p for p in (rendered.contract, *rendered.parts) if p not in parts)
            items.append([0, 0, rendered.values] if spec.command == "create" else rendered.values)
        return items
    if spec.map is not None:
        key = str(value)
        if key not in spec.map:
            allowed = ", ".join(sorted(spec.map))
            raise OutboundContractViolation(
                where, target, f"value {key!r} (from {spec.from_}) is not in the contract's map ({allowed})"
            )
        value = spec.map[key]
        if _empty(value):
            return _MISSING
    try:
        value = _convert(value, spec.as_)
        if spec.positive and _number(value) <= 0:
            raise ValueError(f"must be greater than 0, got {value!r}")
    except ValueError as exc:
        source = f" (from {spec.from_})" if spec.from_ else ""
        raise OutboundContractViolation(where, target, f"{exc}{source}") from exc
    return value


def render(name: str, canonical: Mapping[str, Any], *, version: int | None = None) -> OutboundPayload:
    """The payload of contract ``name`` (latest version unless ``version``) for ``canonical``.

    Raises :class:`OutboundContractViolation` before any call when the target would refuse the payload, and
    ``OutboundContractError`` when the contract itself is missing or invalid.
    """
    contract = load_outbound_contract(name, version)
    values: dict[str, Any] = {}
    parts: list[str] = []
    for target, spec in contract.fields.items():
        value = _field_value(contract, target, spec, canonical, parts)
        if value is not _MISSING:
            _set(values, target, value)
    target_name = contract.target.model or contract.target.endpoint
    for required in contract.required:
        if _empty(_get(values, required)):
            spec = contract.fields[required]
            source = f"canonical {spec.from_!r}" if spec.from_ else "its constant"
            raise OutboundContractViolation(
                contract.id,
                required,
                f"required by {contract.target.system} {target_name}, but {source} is missing or empty",
            )
    return OutboundPayload(values=values, contract=contract.id, parts=tuple(parts))
