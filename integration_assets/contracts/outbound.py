"""Outbound contracts: the versioned description of how canonical values become one target system's payload.

The mirror of the inbound contracts (``spec.py``): a YAML file ``contracts/outbound/<system>/<name>.v<N>.yaml``
under the same contracts root (INTEGRATION_CONTRACTS_DIR overrides both), named ``<system>/<name>`` (e.g.
``odoo/sale_order``). It declares the target (system and model or endpoint), each target field's source (a
canonical key, a constant, a derivation, a value map, a default) and the fields the target requires. A
target that starts requiring a field gets a new version of the contract, never a code change. Validated
strictly when loaded; ``mapping/outbound.py`` renders a payload from one. Format: docs/ARCHITECTURE.md,
"Outbound contracts".
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from integration_assets.contracts.spec import OUTBOUND_DIR, ContractError, _UniqueKeyLoader, contracts_root

TargetSystem = Literal["odoo", "easypost", "hubspot", "stripe"]
# How a value is sent: as it is, or converted (HubSpot property values are strings, Odoo ids integers).
SendAs = Literal["raw", "string", "integer", "number", "boolean"]
# Named derivations of a canonical value, applied after ``from`` (implemented in mapping/outbound.py).
Derivation = Literal["https_url", "upper", "lower", "strip"]
# Odoo x2many commands for a list field rendered item by item: create = (0, 0, values).
X2ManyCommand = Literal["create"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# A target field: a name, or a dotted path into a nested object (to_address.street1).
_TARGET_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.yaml$")
_REF = re.compile(r"^(?P<name>[a-z][a-z0-9_]*/[a-z][a-z0-9_]*)(@v(?P<version>[1-9][0-9]*))?$")


class OutboundContractError(ContractError):
    """An outbound contract file is invalid, or no such contract exists."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TargetSpec(_Strict):
    """Where the payload goes: an Odoo model, or an HTTP endpoint of an API."""

    system: TargetSystem
    model: str | None = None  # Odoo: sale.order, res.partner, stock.picking
    endpoint: str | None = None  # HTTP APIs: "PATCH /crm/v3/objects/deals/{id}" (its body, or the part named)

    @model_validator(mode="after")
    def _one(self) -> TargetSpec:
        if (self.model is None) == (self.endpoint is None):
            raise ValueError("target needs exactly one of model (Odoo) or endpoint (HTTP APIs)")
        return self


class OutboundField(_Strict):
    """How one target field gets its value."""

    from_: str | None = Field(default=None, alias="from")  # canonical key, dotted for nested (to_address.zip)
    value: Any = None  # a constant
    derive: Derivation | None = None  # applied to the ``from`` value
    map: dict[str, Any] | None = None  # canonical value -> target value; any other value is a violation
    default: Any = None  # when the value is missing or empty
    as_: SendAs = Field(default="raw", alias="as")
    positive: bool = False  # a number that must be > 0 (quantities, weights)
    # A list rendered item by item through another outbound contract (``odoo/sale_order_line``, or pinned
    # ``odoo/sale_order_line@v2``), each item wrapped as an Odoo x2many ``command`` when set.
    each: str | None = None
    command: X2ManyCommand | None = None
    description: str = ""

    @model_validator(mode="after")
    def _coherent(self) -> OutboundField:
        has_value = "value" in self.model_fields_set
        if (self.from_ is None) == (not has_value):
            raise ValueError("a field takes exactly one of 'from' (a canonical key) or 'value' (a constant)")
        if has_value and (self.derive or self.map is not None or self.each):
            raise ValueError("derive, map and each apply to a 'from' value, not to a constant")
        if self.each is not None:
            if not _REF.match(self.each):
                raise ValueError(f"each: {self.each!r} is not a contract name like odoo/sale_order_line[@v2]")
            if self.map is not None or self.derive or self.as_ != "raw" or self.positive:
                raise ValueError("a field rendered with 'each' takes no map, derive, as or positive")
        if self.command is not None and self.each is None:
            raise ValueError("'command' only applies to a field rendered with 'each'")
        if self.map is not None and not self.map:
            raise ValueError("an empty map accepts no value; leave 'map' out instead")
        return self


class OutboundContract(_Strict):
    """One version of the payload of one target write (``odoo/sale_order@v1``)."""

    name: str  # <system>/<name>, from the file's place
    version: int = Field(ge=1)
    target: TargetSpec
    description: str = ""
    fields: dict[str, OutboundField]
    # The fields the target refuses a write without: checked (present and non-empty) before any call.
    required: tuple[str, ...] = ()
    path: str | None = None

    @property
    def id(self) -> str:
        """The version recorded on the ledger row and any dead letter, e.g. ``odoo/sale_order@v2``."""
        return f"{self.name}@v{self.version}"

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, OutboundField]) -> dict[str, OutboundField]:
        if not v:
            raise ValueError("a contract needs at least one field")
        for name in v:
            if not _TARGET_FIELD.match(name):
                raise ValueError(f"target field {name!r} is not a name or a dotted path")
        names = set(v)
        for name in v:
            # a.b and a.b.c cannot both be set: a.b would be a value and an object at once.
            if any(other.startswith(name + ".") for other in names):
                raise ValueError(f"target field {name!r} is also the parent of another field")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> OutboundContract:
        system, _, short = self.name.partition("/")
        if system != self.target.system or not _NAME.match(short):
            raise ValueError(f"contract {self.name!r} must live under outbound/{self.target.system}/")
        unknown = [r for r in self.required if r not in self.fields]
        if unknown:
            raise ValueError(
                f"required fields with no field spec (add how they get their value): {sorted(unknown)}"
            )
        return self


def outbound_root(root: Path | None = None) -> Path:
    """``<contracts root>/outbound``: INTEGRATION_CONTRACTS_DIR when set, else the shipped contracts."""
    return (root or contracts_root()) / OUTBOUND_DIR


def load_outbound_file(path: Path) -> OutboundContract:
    """One contract file; the name comes from its place (``outbound/<system>/<name>.v<N>.yaml``)."""
    m = _FILE.match(path.name)
    try:
        if m is None:
            raise ValueError("the file name must be <name>.v<N>.yaml")
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
        if not isinstance(raw, dict):
            raise ValueError("the file must be a YAML mapping")
        version = raw.get("version")
        if version != int(m.group("version")):
            raise ValueError(f"version {version!r} does not match the file name's v{m.group('version')}")
        name = f"{path.parent.name}/{m.group('name')}"
        return OutboundContract.model_validate({**raw, "name": name, "path": str(path)})
    except Exception as exc:  # noqa: BLE001 - re-raised as one structured error naming the file
        raise OutboundContractError(f"outbound/{path.parent.name}/{path.name}: {exc}") from exc


def _files(root: Path) -> tuple[tuple[str, int], ...]:
    return tuple((str(p), p.stat().st_mtime_ns) for p in sorted(root.glob("*/*.v*.yaml")))


@functools.lru_cache(maxsize=8)
def _registry_for(files: tuple[tuple[str, int], ...]) -> tuple[OutboundContract, ...]:
    return tuple(load_outbound_file(Path(p)) for p, _ in files)


def outbound_contracts(root: Path | None = None) -> list[OutboundContract]:
    """Every outbound contract version under the contracts root (an edited file is picked up at once)."""
    return list(_registry_for(_files(outbound_root(root))))


def load_outbound_contract(
    name: str, version: int | None = None, *, root: Path | None = None
) -> OutboundContract:
    """Contract ``name`` (``odoo/sale_order``, or ``odoo/sale_order@v2`` pinned) at ``version``, the latest
    when None."""
    m = _REF.match(name)
    if m is None:
        raise OutboundContractError(f"{name!r} is not an outbound contract name like odoo/sale_order")
    if m.group("version") is not None:
        pinned = int(m.group("version"))
        if version is not None and version != pinned:
            raise OutboundContractError(f"{name!r} asked for at version {version}")
        version = pinned
    versions = [c for c in outbound_contracts(root) if c.name == m.group("name")]
    if not versions:
        raise OutboundContractError(
            f"no outbound contract {m.group('name')!r} under {outbound_root(root)} "
            f"(files outbound/<system>/<name>.v<N>.yaml)"
        )
    if version is None:
        return max(versions, key=lambda c: c.version)
    for c in versions:
        if c.version == version:
            return c
    raise OutboundContractError(
        f"no version {version} of {m.group('name')!r} (have {sorted(c.version for c in versions)})"
    )


def clear_cache() -> None:
    _registry_for.cache_clear()
