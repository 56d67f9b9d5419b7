"""The transactional outbox (warehouse/outbox.py): capture in the merge transaction, insert-if-absent on the
key, relay order; on SQLite and PostgreSQL, through the real canonical writer."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.outbound import ledger
from integration_assets.warehouse import outbox
from integration_assets.warehouse.schema import outbox as outbox_table
from tests.outbound.conftest import merge_deals


def _rows(engine: sa.Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            (r.key, r.topic, r.step)
            for r in conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id))
        ]


def test_a_won_deal_is_captured_once_across_duplicate_merges(engine: sa.Engine) -> None:
    merge_deals(engine, [{"id": 1}, {"id": 1}, {"id": 2, "won": False}, {"id": 3}])
    merge_deals(engine, [{"id": 1}, {"id": 3}], load_id="ld_again")  # the same file merged again
    merge_deals(engine, [{"id": 1, "amount": 100.0, "at": "2026-12-02T00:00:00Z"}], load_id="ld_newer")
    assert _rows(engine) == [
        ("deal.won:1", "deal.won", "odoo_order"),
        ("deal.won:3", "deal.won", "odoo_order"),
    ]
    with engine.connect() as conn:
        payloads = [r[0] for r in conn.execute(sa.select(outbox_table.c.payload))]
    assert payloads == ['{"deal_id": "1", "generation": 1}', '{"deal_id": "3", "generation": 1}']


def test_the_capture_rolls_back_with_the_merge(engine: sa.Engine) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), engine.begin() as conn:
        from tests.outbound.conftest import stage_deals

        stage_deals(conn, [{"id": 7}])
        assert outbox.claim_unsent(conn, 10)  # captured inside the merge's transaction...
        raise Boom
    assert _rows(engine) == []  # ...and gone with it


def test_a_deal_that_becomes_won_later_is_captured_then(engine: sa.Engine) -> None:
    merge_deals(engine, [{"id": 5, "won": False}])
    assert _rows(engine) == []
    merge_deals(engine, [{"id": 5, "at": "2026-12-02T00:00:00Z"}], load_id="ld_2")
    assert _rows(engine) == [("deal.won:5", "deal.won", "odoo_order")]


def test_an_amount_change_after_the_order_is_a_deal_changed(engine: sa.Engine) -> None:
    merge_deals(engine, [{"id": 8, "amount": 100.0}])
    with engine.begin() as conn:
        ledger.update_chain(
            conn, "8", {"status": "ordered", "order_id": "41", "amount_at_order": Decimal("100")}
        )
    merge_deals(engine, [{"id": 8, "amount": 100.0}], load_id="same")  # same amount: nothing
    merge_deals(engine, [{"id": 8, "amount": 150.5, "at": "2026-12-02T00:00:00Z"}], load_id="ld_2")
    merge_deals(engine, [{"id": 8, "amount": 150.5, "at": "2026-12-02T00:00:00Z"}], load_id="ld_3")
    assert _rows(engine) == [
        ("deal.won:8", "deal.won", "odoo_order"),
        ("deal.changed:8:150.50", "deal.changed", "odoo_order"),
    ]


def test_rewin_is_ignored_unless_the_policy_says_new_order(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    merge_deals(engine, [{"id": 9}])
    with engine.begin() as conn:
        ledger.update_chain(conn, "9", {"status": "ordered", "order_id": "41"})
    merge_deals(engine, [{"id": 9, "won": False, "at": "2026-12-02T00:00:00Z"}], load_id="reopen")
    merge_deals(engine, [{"id": 9, "at": "2026-12-03T00:00:00Z"}], load_id="rewin")
    assert [k for k, _, _ in _rows(engine)] == ["deal.won:9"]  # rewin: ignore (the default)

    policies = tmp_path / "policies.yaml"
    src = Path(__file__).parents[2] / "integration_assets" / "policies.yaml"
    text = src.read_text()
    assert "rewin: ignore" in text
    policies.write_text(text.replace("rewin: ignore", "rewin: new_order"))
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(policies))
    merge_deals(engine, [{"id": 9, "at": "2026-12-03T00:00:00Z"}], load_id="still_won")
    assert [k for k, _, _ in _rows(engine)] == ["deal.won:9"]  # won, never reopened since: no new chain
    merge_deals(engine, [{"id": 9, "won": False, "at": "2026-12-04T00:00:00Z"}], load_id="reopen2")
    merge_deals(engine, [{"id": 9, "at": "2026-12-05T00:00:00Z"}], load_id="rewin2")
    merge_deals(engine, [{"id": 9, "at": "2026-12-05T00:00:00Z"}], load_id="rewin2_again")
    assert _rows(engine) == [
        ("deal.won:9", "deal.won", "odoo_order"),
        ("deal.reopened:9:1", "deal.reopened", ""),
        ("deal.won:9:2", "deal.won", "odoo_order"),
    ]


def test_enqueue_is_insert_if_absent_and_claim_is_in_id_order(engine: sa.Engine) -> None:
    rows = [outbox.OutboxRow(f"t:{i}", "t", "s", str(i % 2), {"n": i}) for i in range(5)]
    with engine.begin() as conn:
        assert outbox.enqueue(conn, rows) == 5
        assert outbox.enqueue(conn, [*rows, outbox.OutboxRow("t:9", "t", "s", "1", {})]) == 1
    with engine.begin() as conn:
        got = outbox.claim_unsent(conn, 3)
        assert [r.key for r in got] == ["t:0", "t:1", "t:2"]
        assert outbox.mark_sent(conn, [r.id for r in got]) == 3
        assert outbox.mark_sent(conn, [r.id for r in got]) == 0
    with engine.connect() as conn:
        assert [r.key for r in outbox.claim_unsent(conn, 10)] == ["t:3", "t:4", "t:9"]


def test_a_merge_of_a_table_that_triggers_nothing_runs_no_capture_query(engine: sa.Engine) -> None:
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as conn:
            assert outbox.capture(conn, "contacts", "_stage_contacts") == 0
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert not [s for s in statements if "outbox" in s or "outbound_chains" in s]
