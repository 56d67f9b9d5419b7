"""Mapping contracts: the declarative, versioned description of how one source shape becomes one canonical table.

A contract is a YAML file ``contracts/<system>/<entity>[_<variant>].v<N>.yaml``. Changing how a source maps
(a renamed column, a new date format, a new dropdown value) is an edit to a contract, never to pipeline code.
Contracts are validated strictly when loaded: an unknown key, an unknown canonical column or an unsafe
identifier is an error at load time, not at run time.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from integration_assets.contracts.ids import IdType
from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.settings import get_settings
from integration_assets.warehouse.schema import LATE_COLUMNS, LINEAGE_COLUMNS

CONTRACTS_DIR = Path(__file__).parent

FieldType = Literal[
    "string", "id", "integer", "decimal", "boolean", "datetime", "date", "enum", "many2one", "association"
]
# What happens to a value that is not in an enum's value map.
UnknownPolicy = Literal["quarantine", "null", "keep", "default"]
FileFormat = Literal["csv", "json", "jsonl", "parquet"]
# How records of a shape arrive: export files in the inbox, or provider events from the queue (webhooks).
DeliveryMode = Literal["file", "event"]  # the YAML key stays `delivery:`
Transform = Literal["strip", "lower", "upper", "collapse_spaces"]
# What a load does to a stored column whose source column the file does not have: keep the stored values
# (a file says nothing about a column it lacks) or set them to null (the file's rows are whole records).
OnMissing = Literal["keep", "null"]

# Canonical identifiers are plain snake_case; Postgres truncates identifiers at 63 bytes, so longer ones are refused.
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class ContractError(ValueError):
    """A contract file is invalid (raised at load time)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """How one source column becomes one canonical column."""

    to: str
    type: FieldType = "string"
    required: bool = False  # column must be present in the file and every value non-empty
    transform: tuple[Transform, ...] = ()
    max_length: int | None = None
    formats: tuple[str, ...] = ()  # datetime/date: strptime formats, or 'iso8601', 'epoch_ms', 'epoch_s'
    tz: str = "UTC"  # zone of naive datetimes
    values: dict[str, str] = Field(default_factory=dict)  # enum: source value/label -> canonical value
    case_insensitive: bool = True
    on_unknown: UnknownPolicy = "quarantine"
    default: str | None = None  # enum on_unknown=default
    true_values: tuple[str, ...] = ("true", "1", "yes", "y", "t")
    false_values: tuple[str, ...] = ("false", "0", "no", "n", "f")
    pii: bool = False  # never shown in drift samples, alerts or exports
    # The source leaves the field out when it has no value (archivedAt of a live record): not drift.
    absent_ok: bool = False
    # many2one: which element of Odoo's [id, "display name"] pair to keep (name: e.g. currency_id -> "USD").
    part: Literal["id", "name"] = "id"
    # id, many2one and association fields: how the id is normalised (integration_assets.contracts.ids), so a
    # key and every reference to it have one spelling (Odoo 042 and 42.0 are 42). Unset: checked, not normalised.
    id_type: IdType | None = None

    @field_validator("to")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not _IDENT.match(v):
            raise ValueError(
                f"canonical column {v!r} is not a safe identifier (snake_case, at most 63 bytes)"
            )
        return v

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        if self.type in ("datetime", "date") and not self.formats:
            raise ValueError(f"{self.to}: a {self.type} field needs 'formats'")
        if self.type == "enum" and not self.values:
            raise ValueError(f"{self.to}: an enum field needs 'values'")
        if self.on_unknown == "default" and self.default is None:
            raise ValueError(f"{self.to}: on_unknown=default needs 'default'")
        if self.part != "id" and self.type != "many2one":
            raise ValueError(f"{self.to}: 'part' only applies to many2one fields")
        if self.id_type is not None and (
            self.type not in ("id", "many2one", "association") or self.part != "id"
        ):
            raise ValueError(
                f"{self.to}: 'id_type' only applies to id, many2one (part: id) and association fields"
            )
        return self


class DerivedSpec(_Strict):
    """A canonical column computed from already-mapped canonical columns."""

    equals: tuple[str, str] | None = None  # (column, value) -> boolean
    is_in: tuple[str, tuple[str, ...]] | None = Field(default=None, alias="in")
    coalesce: tuple[str, ...] | None = None
    latest: tuple[str, ...] | None = None  # the latest of timestamp columns (nulls skipped)

    @model_validator(mode="after")
    def _one(self) -> DerivedSpec:
        if sum(x is not None for x in (self.equals, self.is_in, self.coalesce, self.latest)) != 1:
            raise ValueError("a derived field takes exactly one of: equals, in, coalesce, latest")
        return self


class ReferenceSpec(_Strict):
    """A foreign key to another canonical table of the same source system."""

    table: str
    on_missing: Literal["quarantine", "keep"] = "quarantine"


class Contract(_Strict):
    """One version of the mapping from one source shape (system, entity, variant) to a canonical table."""

    system: str
    entity: str  # the inbox folder name, e.g. contacts or sale.order
    variant: str = "default"  # several source shapes of one entity (e.g. csv export vs api)
    version: int
    # Event contracts (entity = event family, e.g. payment_intent) are applied by integration_assets.events
    # to queued webhook events; they have no inbox folder and no file assets.
    delivery: DeliveryMode = "file"
    target: str
    formats: tuple[FileFormat, ...]
    description: str = ""
    odoo_false_is_null: bool = False  # Odoo sends false for empty char/date/many2one values
    # A file without an optional column leaves that column's stored values as they are (keep), or sets them
    # to null (null: for sources whose records are always whole, so an absent key means "no value").
    on_missing: OnMissing = "keep"
    empty_values: tuple[str, ...] = ("",)
    fields: dict[str, FieldSpec]
    ignored: tuple[str, ...] = ()  # source columns known and deliberately not mapped (not reported as drift)
    defaults: dict[str, Any] = Field(default_factory=dict)  # canonical columns the source does not have
    derived: dict[str, DerivedSpec] = Field(default_factory=dict)
    references: dict[str, ReferenceSpec] = Field(default_factory=dict)
    path: str | None = None

    @property
    def id(self) -> str:
        """The contract version recorded on every row and dead letter, e.g. ``hubspot.contacts.csv@v1``."""
        return f"{self.system}.{self.entity}.{self.variant}@v{self.version}"

    @property
    def family(self) -> str:
        return f"{self.system}.{self.entity}.{self.variant}"

    @property
    def required_columns(self) -> list[str]:
        return [src for src, f in self.fields.items() if f.required]

    def source_for(self, canonical: str) -> str | None:
        for src, f in self.fields.items():
            if f.to == canonical:
                return src
        return None

    @property
    def pii_columns(self) -> set[str]:
        """Source and canonical names of PII fields."""
        out: set[str] = set()
        for src, f in self.fields.items():
            if f.pii:
                out.update((src, f.to))
        return out

    @model_validator(mode="after")
    def _against_model(self) -> Contract:
        model = CANONICAL_MODELS.get(self.target)
        if model is None:
            raise ValueError(f"unknown canonical table {self.target!r}")
        canonical = set(model.to_schema().columns)
        targets = [f.to for f in self.fields.values()]
        dupes = {t for t in targets if targets.count(t) > 1}
        if dupes:
            raise ValueError(f"several source columns map to {sorted(dupes)}")
        produced = set(targets) | set(self.defaults) | set(self.derived)
        unknown = produced - canonical
        if unknown:
            raise ValueError(f"columns not in canonical model {self.target}: {sorted(unknown)}")
        for must in ("source_id", "source_updated_at"):
            if must not in produced:
                raise ValueError(f"the contract must produce {must}")
        missing = canonical - produced - LINEAGE_COLUMNS - LATE_COLUMNS
        if missing:
            raise ValueError(
                f"canonical columns of {self.target} with no source, default or derivation: {sorted(missing)}"
            )
        for col, ref in self.references.items():
            if col not in produced:
                raise ValueError(f"reference on unknown column {col!r}")
            if ref.table not in CANONICAL_MODELS:
                raise ValueError(f"reference to unknown table {ref.table!r}")
        return self


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; in a contract that drops a mapping, so it is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_contract(path: Path) -> Contract:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
        return Contract.model_validate({**raw, "path": str(path)})
    except Exception as exc:  # noqa: BLE001 - re-raised as one structured error naming the file
        raise ContractError(f"{path.name}: {exc}") from exc


def contracts_root() -> Path:
    """INTEGRATION_CONTRACTS_DIR when set (a team's own contracts), else the contracts shipped in the package."""
    return get_settings().contracts_dir or CONTRACTS_DIR


# The folder of the outbound contracts (contracts/outbound.py): under the same root, never a source system.
OUTBOUND_DIR = "outbound"


def _files(root: Path) -> tuple[tuple[str, int], ...]:
    return tuple(
        (str(p), p.stat().st_mtime_ns)
        for p in sorted(root.glob("*/*.v*.yaml"))
        if p.parent.name != OUTBOUND_DIR
    )


@functools.lru_cache(maxsize=8)
def _registry_for(files: tuple[tuple[str, int], ...]) -> tuple[Contract, ...]:
    contracts = [load_contract(Path(p)) for p, _ in files]
    seen: dict[str, str] = {}
    for c in contracts:
        if c.id in seen:
            raise ContractError(f"{c.id} defined twice: {seen[c.id]} and {c.path}")
        seen[c.id] = str(c.path)
    return tuple(contracts)


def all_contracts(root: Path | None = None) -> list[Contract]:
    """Every contract version under ``root`` (default: contracts_root()). An edited file is picked up at once."""
    return list(_registry_for(_files(root or contracts_root())))


def contracts_for(system: str, entity: str, root: Path | None = None) -> list[Contract]:
    """All versions of every variant for one inbox folder, newest version first."""
    found = [c for c in all_contracts(root) if c.system == system and c.entity == entity]
    return sorted(found, key=lambda c: (c.variant, -c.version))


def known_entities(root: Path | None = None) -> list[tuple[str, str, str]]:
    """(system, entity, target table) for every inbox folder that has a contract (event contracts have none)."""
    seen: dict[tuple[str, str], str] = {}
    for c in all_contracts(root):
        if c.delivery != "file":
            continue
        seen.setdefault((c.system, c.entity), c.target)
    return [(s, e, t) for (s, e), t in sorted(seen.items())]


def entity_slug(entity: str) -> str:
    """An entity as an identifier in asset keys, job names and cursor files: Odoo model names (sale.order)
    become sale_order."""
    return entity.replace(".", "_")


def get_contract(contract_id: str, root: Path | None = None) -> Contract:
    for c in all_contracts(root):
        if c.id == contract_id:
            return c
    raise ContractError(f"no contract {contract_id!r}")


def clear_cache() -> None:
    _registry_for.cache_clear()
