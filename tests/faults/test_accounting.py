"""The checker itself must be able to fail: a lost event, two different events behind one key, a key
collision recorded in the dead letters, numeric twins and a file loaded twice are each seen in the figures
computed from the tables (SQLite warehouse, rows written directly)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import CANONICAL_TABLES, dead_letters, loads, processed_events
from tests.faults.accounting import EventLedger, account_events, account_rows, normalise_id

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("42", "42"),
        ("042", "42"),
        ("42.0", "42"),
        ("4.2e1", "42"),
        ("7001e0", "7001"),
        (" 7 ", "7"),
        ("42.5", "42.5"),
        ("abc", "abc"),
        ("True", "True"),
        ("cus_042", "cus_042"),
    ],
)
def test_normalise_id(raw: str, canonical: str) -> None:
    assert normalise_id(raw) == canonical


def _ledger_row(key: str, outcome: str = "applied") -> dict[str, object]:
    return {
        "source": key.split(":", 1)[0],
        "event_id": key,
        "event_type": "t",
        "received_at": NOW,
        "applied_at": NOW,
        "outcome": outcome,
        "batch_id": "b",
    }


def _letter(key: str, n: int, status: str = "pending") -> dict[str, object]:
    return {
        "fingerprint": f"fp{n}",
        "source_system": "stripe",
        "entity": "event",
        "natural_key": key,
        "stage": "event",
        "check_name": "x",
        "reason": "r",
        "status": status,
        "first_seen": NOW,
        "last_seen": NOW,
    }


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_event_figures_see_loss_collisions_and_two_places(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ledger = EventLedger()
    ledger.send("a", "stripe:a")
    ledger.send("a", "stripe:a")  # a redelivery: still one event
    ledger.send("b", "stripe:b")  # never recorded: lost
    ledger.send("c1", "stripe:c")  # two different events behind one key
    ledger.send("c2", "stripe:c")
    ledger.send("d", "stripe:d")  # applied and still pending in the dead letters: two places
    with engine.begin() as conn:
        conn.execute(
            sa.insert(processed_events), [_ledger_row(k) for k in ("stripe:a", "stripe:c", "stripe:d")]
        )
        conn.execute(sa.insert(dead_letters), [_letter("stripe:d", 1)])
    fig = account_events(engine, ledger, "t")
    assert (fig.sent, fig.applied, fig.lost, fig.duplicates) == (5, 3, 2, 1)
    with engine.begin() as conn:  # the second content of key c recorded as a collision
        conn.execute(sa.insert(dead_letters), [_letter("stripe:c#collision-0123456789abcdef", 2)])
    fig = account_events(engine, ledger, "t")
    assert (fig.applied, fig.dead_lettered, fig.lost, fig.duplicates) == (3, 1, 1, 1)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_row_figures_see_twins_repeated_loads_and_erasures(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    t = CANONICAL_TABLES["contacts"]
    lineage = {
        "source_system": "hubspot",
        "source_updated_at": NOW,
        "mapping_version": "v",
        "load_id": "l",
        "row_hash": 1,
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(t), [{**lineage, "source_id": i} for i in ("42", "042", "7")])
        conn.execute(
            sa.insert(loads),
            [
                {
                    "load_id": f"l{i}",
                    "source_system": "hubspot",
                    "entity": "contacts",
                    "status": "succeeded",
                    "content_hash": "h",
                    "started_at": NOW,
                }
                for i in range(2)
            ],
        )
    fig = account_rows(
        engine,
        "t",
        table="contacts",
        source_system="hubspot",
        entity="contacts",
        sent_ids=["42", "7", "9"],
        erased_values=3,
    )
    assert (fig.sent, fig.applied, fig.duplicates, fig.lost) == (3, 2, 2, 1 + 3)
