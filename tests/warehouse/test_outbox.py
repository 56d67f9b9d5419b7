"""The transactional outbox (warehouse/outbox.py): capture in the merge transaction, insert-if-absent on the
key, relay order; on SQLite and PostgreSQL, through the real canonical writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from integration_assets.outbound import ledger
from integration_assets.warehouse import outbox
from integration_assets.warehouse.schema import outbox as outbox_table
from tests.outbound.conftest import merge_deals, merge_rows


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
        ("deal.won:9:2", "deal.won", "odoo_order"),
    ]


def test_history_first_seen_already_won_starts_no_chain(engine: sa.Engine) -> None:
    old = datetime.now(UTC) - timedelta(days=30)
    merge_rows(
        engine,
        "sales_orders",
        [
            {"source_system": "odoo", "source_id": "900", "client_order_ref": "41", "state": "sale"},
            {
                "source_system": "odoo",
                "source_id": "901",
                "client_order_ref": "hubspot-deal:42",
                "state": "sale",
            },
        ],
    )
    merge_deals(
        engine,
        [
            {"id": 40, "close_date": old},  # won a month ago: history
            {"id": 41},  # won an hour ago, but Odoo already has its order (ref = the deal id)
            {"id": 42},  # ... (ref = hubspot-deal:<id>)
            {"id": 43},  # won an hour ago, no order: a new chain
        ],
    )
    assert [k for k, _, _ in _rows(engine)] == ["deal.won:43"]
    # History stays history when it changes later (stored as won before: nothing happened to its stage).
    merge_deals(
        engine, [{"id": 40, "close_date": old, "amount": 5.0, "at": "2026-12-02T00:00:00Z"}], load_id="l2"
    )
    assert [k for k, _, _ in _rows(engine)] == ["deal.won:43"]
    # A history deal reopened and won again is a deal won now.
    merge_deals(engine, [{"id": 40, "won": False, "at": "2026-12-03T00:00:00Z"}], load_id="l3")
    merge_deals(engine, [{"id": 40, "at": "2026-12-04T00:00:00Z"}], load_id="l4")
    assert [k for k, _, _ in _rows(engine)] == ["deal.won:43", "deal.won:40"]


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


def _chain(engine: sa.Engine, chain_id: str, **values: object) -> None:
    with engine.begin() as conn:
        ledger.update_chain(conn, chain_id, values)


def test_a_chains_order_merged_as_cancelled_asks_for_compensation(engine: sa.Engine) -> None:
    _chain(engine, "20", status="ordered", order_id="501")
    merge_rows(engine, "sales_orders", [{"source_system": "odoo", "source_id": "501", "state": "sale"}])
    merge_rows(engine, "sales_orders", [{"source_system": "odoo", "source_id": "777", "state": "cancel"}])
    assert _rows(engine) == []  # not cancelled / not a chain's order
    for load in ("c1", "c2"):  # cancelled, merged twice
        merge_rows(
            engine,
            "sales_orders",
            [
                {
                    "source_system": "odoo",
                    "source_id": "501",
                    "state": "cancel",
                    "source_updated_at": "2026-12-02T00:00:00Z",
                }
            ],
            load_id=load,
        )
    assert _rows(engine) == [("order.cancelled:20:1", "order.cancelled", "compensate")]


def test_each_tracker_event_for_a_chains_code_goes_to_hubspot_once(engine: sa.Engine) -> None:
    _chain(engine, "21", status="labelled", tracking_code="EZ1000000001")
    tracker = {"source_system": "easypost", "source_id": "trk_1", "tracking_code": "EZ1000000001"}
    transit = {**tracker, "status": "in_transit", "event_id": "easypost:evt_1"}
    merge_rows(engine, "shipment_events", [transit, transit])
    merge_rows(engine, "shipment_events", [transit], load_id="again")  # the same event delivered twice
    other = {**transit, "source_id": "trk_2", "tracking_code": "EZ_OTHER", "event_id": "easypost:evt_9"}
    merge_rows(engine, "shipment_events", [other], load_id="x")  # not a chain's code
    delivered = {
        **tracker,
        "status": "delivered",
        "event_id": "easypost:evt_2",
        "source_updated_at": "2026-12-02T00:00:00Z",
    }
    merge_rows(engine, "shipment_events", [delivered], load_id="later")  # the same tracker's next status
    assert _rows(engine) == [
        ("tracking.updated:21:easypost:trk_1:easypost:evt_1", "tracking.updated", "hubspot_tracking"),
        ("tracking.updated:21:easypost:trk_1:easypost:evt_2", "tracking.updated", "hubspot_tracking"),
    ]
    with engine.connect() as conn:
        payloads = list(conn.execute(sa.select(outbox_table.c.payload).order_by(outbox_table.c.id)).scalars())
    assert '"status": "in_transit"' in payloads[0] and '"tracking_code": "EZ1000000001"' in payloads[0]
    assert (
        '"status": "delivered"' in payloads[1] and '"status_at": "2026-12-02T00:00:00+00:00"' in payloads[1]
    )


def test_a_succeeded_payment_releases_the_label_when_payment_is_required(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _chain(engine, "22", status="ordered", order_id="502")
    pay = {"source_system": "stripe", "source_id": "pi_1", "order_id": "502", "status": "succeeded"}
    merge_rows(engine, "payments", [pay])
    assert _rows(engine) == []  # require_payment is off by default: the label does not wait
    _policy(tmp_path, monkeypatch, "require_payment: false", "require_payment: true")
    merge_rows(engine, "payments", [{**pay, "status": "processing", "source_id": "pi_2"}], load_id="p2")
    merge_rows(engine, "payments", [pay, pay], load_id="p3")
    merge_rows(engine, "payments", [pay], load_id="p4")
    assert _rows(engine) == [("payment.succeeded:22:1", "payment.succeeded", "easypost_label")]


def test_the_stripe_trigger_starts_the_chain_on_the_payment_not_the_deal(
    engine: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _policy(tmp_path, monkeypatch, "trigger: hubspot_deal_won", "trigger: stripe_payment_succeeded")
    merge_deals(engine, [{"id": 23}, {"id": 24}])
    assert _rows(engine) == []
    merge_rows(
        engine,
        "payments",
        [{"source_system": "stripe", "source_id": "pi_9", "order_id": "23", "status": "succeeded"}],
    )
    assert _rows(engine) == [("deal.won:23", "deal.won", "odoo_order")]


def _policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    src = Path(__file__).parents[2] / "integration_assets" / "policies.yaml"
    text = src.read_text()
    assert old in text
    path = tmp_path / f"policies-{abs(hash(new))}.yaml"
    path.write_text(text.replace(old, new))
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(path))
