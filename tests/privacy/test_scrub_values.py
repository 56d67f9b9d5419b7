"""The erasure's value scrub: copies of a person's values in other tables' text columns are replaced; the
dead-letter tables are rewritten through their store (``dead_letters.store.replace_texts``)."""

from __future__ import annotations

import sqlalchemy as sa

from integration_assets.dead_letters import store
from integration_assets.erasure.audit import Erasure, utcnow
from integration_assets.erasure.tables import scrub_values
from integration_assets.privacy.subjects import Subject
from integration_assets.warehouse.schema import dead_letter_actions, dead_letters

EMAIL = "jane.doe@example.com"


def _dead_letter(fp: str, reason: str) -> dict:
    return {
        "fingerprint": fp,
        "source_system": "odoo",
        "entity": "sale_orders",
        "stage": "map",
        "check_name": "unknown_value",
        "reason": reason,
        "raw_record": '{"note": "x"}',
    }


def _scrub(engine: sa.Engine, dry_run: bool) -> tuple[Erasure, dict[str, str], str | None]:
    e = Erasure(Subject.of("hubspot", "contacts", "101"), "cli", None, utcnow(), dry_run=dry_run)
    with engine.begin() as conn:
        store.write_row_dead_letters(
            conn, [_dead_letter("hit", f"customer {EMAIL} unknown"), _dead_letter("miss", "other")]
        )
        hit = conn.execute(
            sa.select(dead_letters.c.id).where(dead_letters.c.fingerprint == "hit")
        ).scalar_one()
        store.discard(conn, [hit], f"asked by {EMAIL}", who="test")
        scrub_values(conn, e, {EMAIL})
        reasons = {r.fingerprint: r.reason for r in conn.execute(sa.select(dead_letters))}
        detail = conn.execute(sa.select(dead_letter_actions.c.detail)).scalar_one()
    return e, reasons, detail


def test_scrub_replaces_copies_in_dead_letters_and_their_audit_trail(engine: sa.Engine) -> None:
    e, reasons, detail = _scrub(engine, dry_run=False)
    assert EMAIL not in reasons["hit"] and reasons["hit"].startswith("customer ")
    assert reasons["miss"] == "other"
    assert detail is not None and EMAIL not in detail
    assert e.stores["dead_letters_values"] == 1 and e.stores["dead_letter_actions_values"] == 1


def test_a_dry_run_counts_and_changes_nothing(engine: sa.Engine) -> None:
    e, reasons, detail = _scrub(engine, dry_run=True)
    assert EMAIL in reasons["hit"] and detail is not None and EMAIL in detail
    assert e.stores["dead_letters_values"] == 1 and e.stores["dead_letter_actions_values"] == 1
