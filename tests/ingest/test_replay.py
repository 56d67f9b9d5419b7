"""Review and replay: a new dropdown value is quarantined, the contract learns it, a replay loads the rows
(the `dlq` commands over the same story: tests/cli/test_dlq.py)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.dead_letters import export, queries, store
from integration_assets.dead_letters.queries import Filter
from integration_assets.ingest.load import ingest_file
from integration_assets.ingest.replay import replay
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import contacts, dead_letter_actions, dead_letters
from tests.support.contracts import teach_prospect

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"


def _pending(conn: sa.Connection) -> dict[str, dict]:
    rows = conn.execute(sa.select(dead_letters).where(dead_letters.c.status == "pending")).mappings()
    return {r["natural_key"]: dict(r) for r in rows}


def test_new_dropdown_value_quarantined_then_replayed(warehouse_url: str, contracts_dir: Path) -> None:
    engine = get_engine(warehouse_url)
    report = ingest_file(FIXTURE, "hubspot", "contacts")
    assert report.rows_quarantined == 2 and report.balanced
    with engine.connect() as conn:
        pending = _pending(conn)
    assert pending["104"]["check_name"] == "unknown_value" and pending["104"]["offending_value"] == "Prospect"
    assert pending["103"]["check_name"].startswith("email:")

    dry = replay(Filter(check="unknown_value"), dry_run=True)
    assert dry.selected == 1 and dry.replayed == [] and len(dry.still_failing) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar_one() == 3
        assert _pending(conn)["104"]["attempts"] == 1  # the dry run changed nothing

    teach_prospect(contracts_dir)
    dry = replay(Filter(check="unknown_value"), dry_run=True)
    assert len(dry.replayed) == 1
    done = replay(Filter(), who="tester")  # every pending one
    assert len(done.replayed) == 1 and len(done.still_failing) == 1 and done.tables == {"contacts"}
    with engine.connect() as conn:
        row = conn.execute(sa.select(contacts).where(contacts.c.source_id == "104")).mappings().one()
        assert row["lifecycle_stage"] == "opportunity"
        assert row["mapping_version"] == "hubspot.contacts.csv@v1"
        pending = _pending(conn)
        assert set(pending) == {"103"} and pending["103"]["attempts"] == 2
        replayed = (
            conn.execute(sa.select(dead_letters).where(dead_letters.c.natural_key == "104")).mappings().one()
        )
        assert replayed["status"] == "replayed" and replayed["resolved_at"] is not None
        trail = conn.execute(
            sa.select(
                dead_letter_actions.c.action, dead_letter_actions.c.outcome, dead_letter_actions.c.actor
            ).where(dead_letter_actions.c.dead_letter_id == replayed["id"])
        ).all()
        assert ("replay", "replayed", "tester") in [tuple(t) for t in trail]

    # Replaying again changes nothing: the replayed one is no longer pending, the merge is idempotent.
    again = replay(Filter(ids=(replayed["id"],), status=None))
    assert again.replayed == [] and again.skipped == {replayed["id"]: "status is replayed"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar_one() == 4


def test_discard_needs_a_note_and_is_audited(warehouse_url: str) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:
        ids = [r["id"] for r in queries.select(conn, Filter())]
        with pytest.raises(queries.DeadLetterError):
            store.discard(conn, ids, "  ")
        assert store.discard(conn, ids, "test data, ignore", who="ops") == 2
        assert queries.select(conn, Filter()) == []
        assert store.discard(conn, ids, "again", who="ops") == 0
        with pytest.raises(queries.DeadLetterError, match="no dead letters with ids"):
            store.discard(conn, [999999], "x")


def test_export_has_no_pii_and_neutralises_formulas(warehouse_url: str) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:
        conn.execute(
            dead_letters.update()
            .where(dead_letters.c.natural_key == "104")
            .values(offending_value='=HYPERLINK("http://x")', column_name="Lifecycle Stage")
        )
        text = export.export_csv(conn, Filter())
    assert "not-an-email" not in text and "@example.com" not in text
    assert "raw_record" not in text.splitlines()[0]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2
    by_key = {r["natural_key"]: r for r in rows}
    assert by_key["104"]["offending_value"].startswith("'=")
    assert by_key["103"]["offending_value"] == "<withheld: PII column>"
    assert text.splitlines()[1].startswith('"')  # every field quoted
