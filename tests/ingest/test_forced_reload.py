"""Forced re-loads (``ingest_file(force=True)``, ``ingest.process(force=True)``): the same bytes loaded again
under the current contract. A contract fixed since corrects the rows of the same source version (the forced
merge wins a tie), identical rows stay unchanged, an older version never replaces a newer one, and the claim on
the content still admits one load at a time. An unforced identical file stays a counted duplicate. SQLite and
PostgreSQL; HubSpot v3 API deals (JSONL without ``archivedAt``: partial rows, the merge's keep path)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from integration_assets.ingest.inbox import InboxFile
from integration_assets.ingest.load import ingest_file
from integration_assets.ingest.process import process
from integration_assets.settings import get_settings
from integration_assets.warehouse import ledger
from integration_assets.warehouse.ledger import LoadReport, new_load_id
from integration_assets.warehouse.schema import CANONICAL_TABLES, loads

CONTRACT = Path("hubspot") / "deals_api.v1.yaml"
RIGHT = "      closedlost: closedlost\n"
WRONG = "      closedlost: closedwon\n"  # the bug: lost deals load as won
T = "2026-10-12T10:00:00.000Z"


def deal(rid: str, stage: str, *, modified: str = T, amount: str = "100.00") -> dict[str, Any]:
    return {
        "id": rid,
        "properties": {
            "dealname": f"Deal {rid}",
            "dealstage": stage,
            "pipeline": "default",
            "amount": amount,
            "hs_lastmodifieddate": modified,
        },
    }


def put(name: str, records: list[dict[str, Any]]) -> Path:
    path = get_settings().inbox_dir / "hubspot" / "deals" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def load(path: Path, **kw: Any) -> LoadReport:
    report = ingest_file(path, "hubspot", "deals", **kw)
    assert report.balanced, report.as_dict()
    return report


def counts(r: LoadReport) -> tuple[int, int, int, int, int, int]:
    """(read, inserted, updated, unchanged, duplicates, quarantined)"""
    return (
        r.rows_read,
        r.rows_inserted,
        r.rows_updated,
        r.rows_unchanged,
        r.rows_duplicate,
        r.rows_quarantined,
    )


def stored(engine: sa.Engine) -> dict[str, tuple[str, bool]]:
    """source_id -> (stage, is_closed_won); one row per deal."""
    t = CANONICAL_TABLES["deals"]
    with engine.connect() as conn:
        got = conn.execute(sa.select(t.c.source_id, t.c.stage, t.c.is_closed_won)).all()
    assert len(got) == len({r[0] for r in got})
    return {r[0]: (r[1], bool(r[2])) for r in got}


def ledger_rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(loads.c.status, loads.c.content_hash, loads.c.rows_inserted, loads.c.rows_updated)
                .where(loads.c.entity == "deals")
                .order_by(loads.c.started_at)
            )
        )


def test_a_forced_reload_under_a_fixed_value_map_corrects_the_rows(
    engine: sa.Engine, contracts_dir: Path
) -> None:
    contract = contracts_dir / CONTRACT
    right = contract.read_text()
    assert RIGHT in right
    lost = [str(i) for i in range(1, 9)]  # eight: a tie-break by hash alone would miss some of them
    records = [deal(i, "closedlost") for i in lost] + [deal("9", "contractsent"), deal("10", "closedwon")]
    contract.write_text(right.replace(RIGHT, WRONG, 1))
    first = load(put("deals-1.jsonl", records))
    assert counts(first) == (10, 10, 0, 0, 0, 0)
    assert stored(engine) == {
        **dict.fromkeys(lost, ("closedwon", True)),
        "9": ("contractsent", False),
        "10": ("closedwon", True),
    }
    contract.write_text(right)  # fixed

    # The same bytes, not forced: a counted duplicate, nothing read, the rows still wrong.
    again = load(put("deals-1.jsonl", records))
    assert again.status == "duplicate_file" and first.load_id in (again.error or "")
    assert counts(again) == (0, 0, 0, 0, 0, 0)
    assert stored(engine)["1"] == ("closedwon", True)

    # Forced: the mis-mapped rows are updated in place, the others unchanged.
    forced = load(put("deals-1.jsonl", records), force=True)
    assert forced.status == "succeeded" and forced.content_hash == first.content_hash
    assert counts(forced) == (10, 0, 8, 2, 0, 0)
    assert stored(engine) == {
        **dict.fromkeys(lost, ("closedlost", False)),
        "9": ("contractsent", False),
        "10": ("closedwon", True),
    }
    # Forced once more: nothing differs any more, nothing is written.
    assert counts(load(put("deals-1.jsonl", records), force=True)) == (10, 0, 0, 10, 0, 0)
    assert [(r.status, r.rows_inserted, r.rows_updated) for r in ledger_rows(engine)] == [
        ("succeeded", 10, 0),
        ("duplicate_file", 0, 0),
        ("succeeded", 0, 8),
        ("succeeded", 0, 0),
    ]
    assert len({r.content_hash for r in ledger_rows(engine)}) == 1


def test_ties_go_to_the_greater_hash_unless_forced_and_never_to_an_older_version(engine: sa.Engine) -> None:
    # Two versions of the same source_updated_at, loaded in both orders (deal 1: a then b; deal 2: b then a).
    a1, b1 = put("a1.jsonl", [deal("1", "contractsent")]), put("b1.jsonl", [deal("1", "qualifiedtobuy")])
    a2, b2 = put("a2.jsonl", [deal("2", "contractsent")]), put("b2.jsonl", [deal("2", "qualifiedtobuy")])
    for path in (a1, b1, b2, a2):
        load(path)
    ties = stored(engine)
    assert ties["1"] == ties["2"]  # unforced: the same row whichever came first
    winner = ties["1"][0]
    loser = {"1": a1, "2": a2} if winner == "qualifiedtobuy" else {"1": b1, "2": b2}
    loser_stage = "contractsent" if winner == "qualifiedtobuy" else "qualifiedtobuy"

    # Forced, the losing version wins the tie: the newer load under the current contract.
    forced = load(loser["1"], force=True)
    assert counts(forced) == (1, 0, 1, 0, 0, 0)
    assert stored(engine)["1"][0] == loser_stage and stored(engine)["2"][0] == winner

    # A newer version is stored; a forced load of an older one with other values changes nothing.
    load(put("newer.jsonl", [deal("2", "closedwon", modified="2026-10-13T09:00:00.000Z")]))
    older = load(
        put("older.jsonl", [deal("2", "closedlost", modified="2026-10-12T09:00:00.000Z")]), force=True
    )
    assert counts(older) == (1, 0, 0, 1, 0, 0)
    assert stored(engine)["2"] == ("closedwon", True)


def test_process_forces_a_loaded_file_through_and_archives_it(engine: sa.Engine) -> None:
    records = [deal("1", "closedlost"), deal("2", "contractsent")]

    def inbox_file() -> InboxFile:
        path = put("deals-2026-10-12.jsonl", records)
        st = path.stat()
        return InboxFile(path, "hubspot", "deals", st.st_size, st.st_mtime)

    first = process(inbox_file(), engine=engine)
    unforced = process(inbox_file(), engine=engine)
    forced = process(inbox_file(), engine=engine, force=True)
    assert (first.status, unforced.status, forced.status) == ("succeeded", "duplicate_file", "succeeded")
    assert counts(forced) == (2, 0, 0, 2, 0, 0)
    assert len({first.load_id, unforced.load_id, forced.load_id}) == 3  # a ledger row each
    assert not (get_settings().inbox_dir / "hubspot" / "deals" / "deals-2026-10-12.jsonl").exists()
    archived = list((get_settings().archive_dir / "hubspot" / "deals").rglob("*deals-2026-10-12*"))
    assert len(archived) == 3


def test_a_forced_load_still_waits_for_a_live_load_of_the_same_content(engine: sa.Engine) -> None:
    path = put("deals.jsonl", [deal("1", "closedlost")])
    load(path)
    # Another load of these bytes is running (a live claim: this process, not finished).
    holder = LoadReport(new_load_id(), "hubspot", "deals", path.name, content_hash=load(path).content_hash)
    ledger.claim(engine, holder)
    try:
        forced = load(path, force=True)
        assert forced.status == "already_loading" and holder.load_id in (forced.error or "")
        assert counts(forced) == (0, 0, 0, 0, 0, 0)
    finally:
        with engine.begin() as conn:
            holder.status = "abandoned"
            ledger.finish(conn, holder)


def test_a_forced_whole_row_wins_a_tie_too(engine: sa.Engine, tmp_path: Path) -> None:
    """Export rows carry every column (no kept columns): the merge's other statement, same rule."""
    header = (
        "Record ID,First Name,Last Name,Email,Phone Number,Lifecycle Stage,Lead Status,"
        "Primary Associated Company ID,Country/Region,Create Date,Last Modified Date\n"
    )
    versions = {
        p: f"{header}1,Ann,Smith,ann@example.com,{p},Lead,New,9000000001,United States,"
        "2026-01-05 09:30,2026-11-20 10:00\n"
        for p in ("+1 555 0101", "+1 555 0102")
    }
    paths = {}
    for i, (p, text) in enumerate(versions.items()):
        paths[p] = tmp_path / "hubspot" / "contacts" / f"{i}.csv"
        paths[p].parent.mkdir(parents=True, exist_ok=True)
        paths[p].write_text(text, encoding="utf-8")
    for path in paths.values():
        report = ingest_file(path, "hubspot", "contacts")
        assert report.status == "succeeded" and report.rows_quarantined == 0
    t = CANONICAL_TABLES["contacts"]

    def phone() -> str:
        with engine.connect() as conn:
            return str(conn.execute(sa.select(t.c.phone)).scalar_one())

    winner = phone()
    [loser] = [p for p in versions if p != winner]
    forced = ingest_file(paths[loser], "hubspot", "contacts", force=True)
    assert counts(forced) == (1, 0, 1, 0, 0, 0) and phone() == loser
    assert counts(ingest_file(paths[winner], "hubspot", "contacts", force=False)) == (0, 0, 0, 0, 0, 0)
