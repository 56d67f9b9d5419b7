"""The store's writes for other packages: retention's prune of settled dead letters and the erasure's
replacement of text columns (they used to write the table themselves)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from integration_assets.dead_letters import queries, store
from integration_assets.warehouse.ledger import utcnow
from integration_assets.warehouse.schema import dead_letter_actions, dead_letters


def _row(fp: str) -> dict:
    return {
        "fingerprint": fp,
        "source_system": "hubspot",
        "entity": "contacts",
        "stage": "map",
        "check_name": "unknown_value",
        "reason": "bad jane@example.com",
        "raw_record": '{"email": "jane@example.com"}',
    }


def _ids(conn: sa.Connection) -> dict[str, int]:
    return {
        r.fingerprint: r.id for r in conn.execute(sa.select(dead_letters.c.fingerprint, dead_letters.c.id))
    }


def test_prune_settled_deletes_only_settled_rows_past_the_cutoff(engine: sa.Engine) -> None:
    old = utcnow() - timedelta(days=200)
    with engine.begin() as conn:
        store.write_row_dead_letters(
            conn, [_row(f) for f in ("pending", "replayed", "discarded", "recent", "seen")]
        )
        ids = _ids(conn)
        store.mark_replayed(conn, [ids["replayed"]], "done")
        store.discard(conn, [ids["discarded"], ids["recent"], ids["seen"]], "no", who="test")
        c = dead_letters.c
        conn.execute(sa.update(dead_letters).values(first_seen=old, last_seen=old))
        conn.execute(
            sa.update(dead_letters)
            .where(c.id.in_([ids["replayed"], ids["discarded"], ids["seen"]]))
            .values(resolved_at=old)
        )
        conn.execute(sa.update(dead_letters).where(c.id == ids["seen"]).values(last_seen=utcnow()))
    cutoff = utcnow() - timedelta(days=30)
    with engine.begin() as conn:
        assert queries.count_settled_before(conn, cutoff) == 2
        assert store.prune_settled(conn, cutoff, limit=1) == 1
        assert store.prune_settled(conn, cutoff, limit=10) == 1
        assert store.prune_settled(conn, cutoff, limit=10) == 0
        assert set(_ids(conn)) == {"pending", "recent", "seen"}
        assert conn.execute(sa.select(sa.func.count()).select_from(dead_letter_actions)).scalar_one() == 3


def test_replace_texts_overwrites_the_named_columns_of_one_row(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        store.write_row_dead_letters(conn, [_row("a"), _row("b")])
        ids = _ids(conn)
        store.discard(conn, [ids["a"]], "about jane@example.com", who="test")
        store.replace_texts(conn, "dead_letters", ids["a"], {"reason": "bad [erased]"})
        action_id = conn.execute(sa.select(dead_letter_actions.c.id)).scalar_one()
        store.replace_texts(conn, "dead_letter_actions", action_id, {"detail": "[erased]"})
        rows = {r.fingerprint: r for r in conn.execute(sa.select(dead_letters))}
        action = conn.execute(sa.select(dead_letter_actions)).one()
    assert rows["a"].reason == "bad [erased]" and rows["a"].raw_record == '{"email": "jane@example.com"}'
    assert rows["b"].reason == "bad jane@example.com"
    assert action.detail == "[erased]"
