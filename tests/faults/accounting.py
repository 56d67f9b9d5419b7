"""The checker of the fault suite: what the producer sent, against what the warehouse holds.

Every scenario keeps a producer ledger (what it sent, by its own idea of identity) and, after the fault and
the recovery, computes from the real warehouse tables (canonical rows, ``processed_events``,
``dead_letters``, the ``loads`` ledger):

- sent: distinct items the producer sent (events, or source rows);
- applied: of those, the ones with an effect in the warehouse (a ledger row applied/stale/ignored, or a
  canonical row);
- dead_lettered: the ones in the dead letters instead (with a reason);
- duplicates: more than one effect for one item: two ledger rows or two dead letters for one key, an item
  both applied and pending in the dead letters, two canonical rows for one id once ids are normalised
  (``42`` and ``042``), two successful loads of one content hash, or an effect rewritten by a redelivery;
- lost: sent items in neither place (two different events sharing one key count as one found, one lost,
  unless the warehouse recorded the second one too).

Nothing here reads the code under test's own counters: only what is stored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

EFFECT_OUTCOMES = ("applied", "stale", "ignored")
_NUMERIC = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")


def normalise_id(value: Any) -> str:
    """The one spelling of an id for comparisons: numeric ids lose leading zeros, ``.0`` and exponents
    (``042``, ``42.0`` and ``4.2e1`` are ``42``); anything else is compared as its stripped text."""
    text = str(value).strip()
    if _NUMERIC.match(text):
        try:
            number = Decimal(text)
        except InvalidOperation:
            return text
        if number == number.to_integral_value():
            return str(int(number))
    return text


def backend_of(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else url.split(":", 1)[0]


@dataclass
class Figures:
    scenario: str
    sent: int
    applied: int
    duplicates: int
    dead_lettered: int
    lost: int
    seconds: float = 0.0
    backend: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SentEvent:
    identity: str  # the producer's own idea of one event (differs for two events that share a provider id)
    key: str  # the queue / ledger key the receiver's own code gives it (``Message.id``)
    attempts: int = 0
    confirmed: bool = False  # the producer saw a 2xx (or a broker confirm) for at least one attempt


class EventLedger:
    """What an event producer sent. ``send`` is called once per attempt."""

    def __init__(self) -> None:
        self.events: dict[str, SentEvent] = {}

    def send(self, identity: str, key: str, *, confirmed: bool = True) -> None:
        ev = self.events.setdefault(identity, SentEvent(identity, key))
        ev.attempts += 1
        ev.confirmed = ev.confirmed or confirmed

    def extend(self, items: Iterable[tuple[str, str]]) -> None:
        for identity, key in items:
            self.send(identity, key)

    @property
    def attempts(self) -> int:
        return sum(e.attempts for e in self.events.values())


def _event_rows(
    conn: sa.Connection, keys: list[str]
) -> tuple[Counter[str], dict[str, set[str]], Counter[str], set[str]]:
    from integration_assets.warehouse.schema import dead_letters, processed_events

    ledger_count: Counter[str] = Counter()
    outcomes: dict[str, set[str]] = {}
    letters: Counter[str] = Counter()
    pending: set[str] = set()
    for start in range(0, len(keys), 1000):
        part = keys[start : start + 1000]
        for key, outcome in conn.execute(
            sa.select(processed_events.c.event_id, processed_events.c.outcome).where(
                processed_events.c.event_id.in_(part)
            )
        ):
            ledger_count[key] += 1
            outcomes.setdefault(key, set()).add(outcome)
    wanted = set(keys)
    for natural_key, status in conn.execute(
        sa.select(dead_letters.c.natural_key, dead_letters.c.status).where(dead_letters.c.stage == "event")
    ):
        # A key collision is dead-lettered under ``<key>#collision-<digest>``: it records the second event.
        key = (natural_key or "").split("#collision-", 1)[0]
        if key not in wanted:
            continue
        letters[key] += 1
        if status == "pending" and "#collision-" not in natural_key:
            pending.add(key)
    return ledger_count, outcomes, letters, pending


def canonical_twins(conn: sa.Connection, table: str, source_system: str | None = None) -> int:
    """Rows beyond the first for one normalised ``(source_system, source_id)``: numeric twins."""
    from integration_assets.warehouse.schema import CANONICAL_TABLES

    t = CANONICAL_TABLES[table]
    query = sa.select(t.c.source_system, t.c.source_id)
    if source_system is not None:
        query = query.where(t.c.source_system == source_system)
    seen = Counter((s, normalise_id(i)) for s, i in conn.execute(query))
    return sum(n - 1 for n in seen.values() if n > 1)


def repeated_loads(conn: sa.Connection) -> int:
    """Successful loads beyond the first for one content hash (a file loaded twice)."""
    from integration_assets.warehouse.schema import loads

    rows = conn.execute(
        sa.select(loads.c.source_system, loads.c.entity, loads.c.content_hash).where(
            loads.c.status == "succeeded", loads.c.kind == "file"
        )
    )
    seen = Counter(tuple(r) for r in rows)
    return sum(n - 1 for n in seen.values() if n > 1)


def file_load_statuses(engine: sa.Engine) -> list[str]:
    """The statuses of the file loads in the ``loads`` ledger, sorted."""
    from integration_assets.warehouse.schema import loads

    with engine.connect() as conn:
        return sorted(conn.scalars(sa.select(loads.c.status).where(loads.c.kind == "file")))


def account_events(
    engine: sa.Engine,
    ledger: EventLedger,
    scenario: str,
    *,
    tables: Iterable[str] = (),
    rewritten: int = 0,
    backend: str = "",
) -> Figures:
    """Figures for an event scenario from ``processed_events``, ``dead_letters`` and canonical ``tables``.
    ``rewritten``: canonical rows the scenario saw changed by a redelivery (a second effect)."""
    by_key: dict[str, list[SentEvent]] = {}
    for ev in ledger.events.values():
        by_key.setdefault(ev.key, []).append(ev)
    with engine.connect() as conn:
        ledger_count, outcomes, letters, pending = _event_rows(conn, sorted(by_key))
        twins = sum(canonical_twins(conn, t) for t in tables)
    applied = dead = lost = dup = 0
    for key, sent in by_key.items():
        effect = bool(outcomes.get(key, set()) & set(EFFECT_OUTCOMES))
        recorded = min(1, ledger_count[key]) + letters[key]
        dup += max(0, ledger_count[key] - 1) + max(0, letters[key] - len(sent))
        if effect and key in pending:
            dup += 1  # applied and still waiting in the dead letters: two places
        found = min(len(sent), recorded)
        lost += len(sent) - found
        if effect:
            applied += min(found, 1)
            found -= 1
        if letters[key]:
            dead += max(0, min(found, letters[key]))
    return Figures(
        scenario,
        sent=len(ledger.events),
        applied=applied,
        duplicates=dup + twins + rewritten,
        dead_lettered=dead,
        lost=lost,
        backend=backend,
    )


def account_rows(
    engine: sa.Engine,
    scenario: str,
    *,
    table: str,
    source_system: str,
    entity: str,
    sent_ids: Iterable[Any],
    erased_values: int = 0,
    backend: str = "",
) -> Figures:
    """Figures for a file scenario: ``sent_ids`` are the source ids of the distinct records the producer
    wrote into its files (spelled as in the file). Applied = a canonical row for the normalised id;
    dead-lettered = a row-level or file-level dead letter naming it instead; duplicates = numeric twins
    plus repeated successful loads of one content hash; ``erased_values`` (stored values a later file wiped
    without carrying them) count as lost."""
    from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters

    t = CANONICAL_TABLES[table]
    wanted = {normalise_id(i) for i in sent_ids}
    with engine.connect() as conn:
        stored = {
            normalise_id(i)
            for i in conn.scalars(sa.select(t.c.source_id).where(t.c.source_system == source_system))
        }
        lettered = {
            normalise_id(k)
            for k in conn.scalars(
                sa.select(dead_letters.c.natural_key).where(
                    dead_letters.c.source_system == source_system,
                    dead_letters.c.entity == entity,
                    dead_letters.c.stage != "event",
                )
            )
            if k is not None
        }
        dup = canonical_twins(conn, table, source_system) + repeated_loads(conn)
    applied = len(wanted & stored)
    dead = len((wanted - stored) & lettered)
    lost = len(wanted - stored - lettered)
    return Figures(
        scenario,
        sent=len(wanted),
        applied=applied,
        duplicates=dup,
        dead_lettered=dead,
        lost=lost + erased_values,
        backend=backend,
    )
