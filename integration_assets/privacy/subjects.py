"""Whose data an erasure is about, which columns and source fields hold personal data, and how to recognise
the person's records in raw payloads (export rows, API records, webhook events).

Personal columns come from the pandera models (the data dictionary marks them ``PII.``) and from the
contracts (``pii: true``): e-mail, first and last name, phone for a HubSpot contact. Ids, business keys,
timestamps, lifecycle stage, lead status, company and country stay: they are not about the person alone and
keep the record countable and joinable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from integration_assets.contracts.models import CANONICAL_MODELS
from integration_assets.contracts.records import flatten_record
from integration_assets.contracts.spec import all_contracts

# What can be erased: (source system, canonical table) -> the HubSpot object type of its webhooks and the
# generic-format objectTypeId (docs/PRIVACY.md). HubSpot sends privacyDeletion for contacts only.
ERASABLE: dict[tuple[str, str], tuple[str, str]] = {("hubspot", "contacts"): ("contact", "0-1")}

# Values shorter than this are not searched for in free text (a two-letter first name would match
# unrelated words); the records of the person are erased whatever their length.
MIN_VALUE_LENGTH = 3
ERASED = "[erased]"


class ErasureError(ValueError):
    """A request that cannot be carried out as asked (unknown source, invalid id)."""


def canonical_id(value: Any) -> str | None:
    """One form per numeric id: ``7001``, ``"07001"``, ``"7001.0"`` and ``"7001e0"`` are the same HubSpot
    record. None for a value that is not a non-negative integral number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    text = str(value).strip()
    if not text or len(text) > 64:
        return None
    if text.isdigit():
        return str(int(text))
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite() or number < 0 or number != number.to_integral_value():
        return None
    return str(int(number))


@dataclass(frozen=True, slots=True)
class Subject:
    """The record whose personal data is erased."""

    system: str
    table: str
    source_id: str

    @classmethod
    def of(cls, system: str, table: str, source_id: Any) -> Subject:
        if (system, table) not in ERASABLE:
            known = ", ".join(f"{s}/{t}" for s, t in ERASABLE)
            raise ErasureError(f"no erasure for {system}/{table} (erasable: {known})")
        canon = canonical_id(source_id)
        if canon is None:
            raise ErasureError(f"{system} {table} ids are non-negative integers; got {str(source_id)[:40]!r}")
        return cls(system, table, canon)

    @property
    def object_type(self) -> str:
        return ERASABLE[(self.system, self.table)][0]

    @property
    def object_type_id(self) -> str:
        return ERASABLE[(self.system, self.table)][1]


def personal_columns(table: str) -> tuple[str, ...]:
    """Canonical columns of ``table`` holding personal data: marked ``PII`` in the model or ``pii`` in a
    contract."""
    cols = {
        name
        for name, col in CANONICAL_MODELS[table].to_schema().columns.items()
        if col.description and re.search(r"\bPII\b", col.description)
    }
    for c in all_contracts():
        if c.target == table:
            cols |= {f.to for f in c.fields.values() if f.pii}
    # Never the key, the version or the erasure mark, whatever a description says.
    return tuple(sorted(cols - {"source_system", "source_id", "source_updated_at", "erased_at"}))


@dataclass(frozen=True)
class SourceFields:
    """Where a table's records carry the id and the personal values, in every contract loading it."""

    entities: frozenset[str]  # inbox/dead-letter entity names of the table's contracts
    id_fields: frozenset[str]  # source fields (flattened) mapped to source_id
    personal_fields: frozenset[str]  # source fields (flattened) mapped to a personal column
    personal_properties: frozenset[str]  # webhook propertyName values of personal properties
    by_column: dict[str, frozenset[str]] = field(
        default_factory=dict
    )  # canonical column -> its source fields


def source_fields(system: str, table: str) -> SourceFields:
    entities: set[str] = set()
    ids: set[str] = set()
    personal: set[str] = set()
    by_column: dict[str, set[str]] = {}
    cols = set(personal_columns(table))
    for c in all_contracts():
        if c.system != system or c.target != table:
            continue
        entities.add(c.entity)
        for src, spec in c.fields.items():
            if spec.to == "source_id":
                ids.add(src)
            elif spec.pii or spec.to in cols:
                personal.add(src)
                by_column.setdefault(spec.to, set()).add(src)
    props = {p.removeprefix("properties.") for p in personal if p.startswith("properties.")}
    return SourceFields(
        frozenset(entities),
        frozenset(ids),
        frozenset(personal),
        frozenset(props),
        {c: frozenset(f) for c, f in by_column.items()},
    )


def _texts(values: Iterable[Any]) -> Iterator[str]:
    for v in values:
        if isinstance(v, str) and len(v.strip()) >= MIN_VALUE_LENGTH:
            yield v.strip()


def record_id(record: Any, fields: SourceFields) -> str | None:
    """The canonical id of an export row or API record (a dict, flattened or not), if it has one."""
    if not isinstance(record, dict):
        return None
    flat = flatten_record(record) if any(isinstance(v, dict) for v in record.values()) else record
    for f in fields.id_fields:
        if f in flat and (cid := canonical_id(flat.get(f))) is not None:
            return cid
    return None


def mentions_id(text: str, source_id: str) -> bool:
    """Whether ``text`` holds the id as a token of its own (``"07001"``, ``7001.0``; not ``a7001@x``)."""
    token = rf"(?<![0-9A-Za-z.])0*{re.escape(source_id)}(?:\.0*|[eE]\+?0+)?(?![0-9A-Za-z])"
    return re.search(token, text) is not None


def event_id_of(doc: Any, object_type: str, object_type_id: str) -> str | None:
    """The canonical objectId of a HubSpot webhook event (legacy or generic format) about that object type."""
    if not isinstance(doc, dict):
        return None
    kind = str(doc.get("subscriptionType") or "")
    if kind.startswith("object."):
        if str(doc.get("objectTypeId")) != object_type_id:
            return None
    elif not kind.startswith(object_type + "."):
        return None
    return canonical_id(doc.get("objectId"))


def _first(flat: dict[str, Any], sources: Iterable[str]) -> str | None:
    return next((v.strip() for f in sources if isinstance(v := flat.get(f), str) and v.strip()), None)


def record_values(record: Any, fields: SourceFields) -> set[str]:
    """The personal values an export row or API record carries, and its full name (first and last name
    together), to find copies of them elsewhere (``distinctive`` says which are searched for)."""
    if not isinstance(record, dict):
        return set()
    flat = flatten_record(record) if any(isinstance(v, dict) for v in record.values()) else record
    out = set(_texts(flat.get(f) for f in fields.personal_fields))
    first = _first(flat, fields.by_column.get("first_name", ()))
    last = _first(flat, fields.by_column.get("last_name", ()))
    if first and last:
        out.add(f"{first} {last}")
    return out


def full_name(first: Any, last: Any) -> set[str]:
    """``first last`` when both are known (a row's name columns)."""
    if isinstance(first, str) and isinstance(last, str) and first.strip() and last.strip():
        return {f"{first.strip()} {last.strip()}"}
    return set()


_PHONE = re.compile(r"[+()0-9][0-9 ()./+-]*")


def distinctive(values: Iterable[str]) -> set[str]:
    """The values that identify the person wherever they appear, and so are replaced in other records and
    free text: e-mail addresses, phone numbers (7+ digits), full names (two words or more). A first or last
    name alone (``Ann``) would hit other people: it goes with the person's own records only."""
    out: set[str] = set()
    for v in _texts(values):
        digits = sum(ch.isdigit() for ch in v)
        if "@" in v or (digits >= 7 and _PHONE.fullmatch(v)) or len(v.split()) >= 2:
            out.add(v)
    return out


def record_emails(record: Any, fields: SourceFields) -> set[str]:
    """The e-mail addresses an export row or API record carries, lower-cased."""
    if not isinstance(record, dict):
        return set()
    flat = flatten_record(record) if any(isinstance(v, dict) for v in record.values()) else record
    return {
        v.strip().lower()
        for f in fields.by_column.get("email", ())
        if isinstance(v := flat.get(f), str) and "@" in v
    }


def event_matches(doc: Any, subject: Subject) -> bool:
    """True when a HubSpot webhook event (legacy or generic format) is about the subject."""
    return event_id_of(doc, subject.object_type, subject.object_type_id) == subject.source_id


def event_values(doc: Any, fields: SourceFields) -> set[str]:
    """The personal value a property-change event carries, if its property is a personal one."""
    if not isinstance(doc, dict) or doc.get("propertyName") not in fields.personal_properties:
        return set()
    return set(_texts([doc.get("propertyValue")]))


def value_forms(values: Iterable[str]) -> set[str]:
    """Each value as written and as JSON escapes it (``\\u00eb``, ``\\"``): how copies of it are stored."""
    forms: set[str] = set()
    for v in _texts(values):
        forms.add(v)
        for ascii_only in (True, False):
            forms.add(json.dumps(v, ensure_ascii=ascii_only)[1:-1])
    return forms


def value_patterns(values: Iterable[str]) -> list[re.Pattern[str]]:
    """Case-insensitive patterns of every form of each value, longest first so that a value containing
    another is replaced whole."""
    return [
        re.compile(re.escape(f), re.IGNORECASE) for f in sorted(value_forms(values), key=len, reverse=True)
    ]


def redact_text(text: str, patterns: list[re.Pattern[str]]) -> tuple[str, int]:
    """``text`` with every pattern replaced by ``[erased]``, and the number of replacements."""
    total = 0
    for p in patterns:
        text, n = p.subn(ERASED, text)
        total += n
    return text, total
