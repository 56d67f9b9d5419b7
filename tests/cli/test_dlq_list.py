"""``integration-assets dlq list``: reasons are shown whole (wrapped at word boundaries, or one line per row with
``--wide``), the "what to do" part included."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.ingest.load import ingest_file
from integration_assets.settings import get_settings
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import dead_letters

FIXTURE = Path(__file__).parent.parent / "fixtures" / "hubspot" / "contacts_small.csv"
REASON = (
    "unknown value 'Prospect' in Lifecycle Stage (contract hubspot.contacts.csv@v1 maps subscriber, lead, "
    "marketingqualifiedlead, customer): add it to the contract's values, then run "
    "integration-assets dlq replay --filter --source hubspot --entity contacts"
)


def _seed(warehouse_url: str) -> None:
    ingest_file(FIXTURE, "hubspot", "contacts")
    with get_engine(get_settings().warehouse_url).begin() as conn:
        conn.execute(dead_letters.update().where(dead_letters.c.natural_key == "104").values(reason=REASON))


def _reason_cells(output: str) -> list[str]:
    """The text of the reason column, line by line (the 7th cell of each table line)."""
    cells = []
    for line in output.splitlines():
        parts = line.split("│")
        if len(parts) == 11:  # border + 9 columns + border
            cells.append(parts[7].strip())
    return cells


def test_list_wraps_the_whole_reason_at_word_boundaries(warehouse_url: str) -> None:
    _seed(warehouse_url)
    res = CliRunner().invoke(main, ["dlq", "list", "--entity", "contacts"])
    assert res.exit_code == 0, res.output
    lines = _reason_cells(res.stdout)
    text = " ".join(c for c in lines if c and c != "reason")
    # Nothing cut, the "what to do" part included, and lines broken between words: a word split across two
    # lines would read "Lifecy cle" here.
    assert REASON in text
    assert max(len(line) for line in res.stdout.splitlines()) <= 140


def test_wide_prints_one_line_per_dead_letter(warehouse_url: str) -> None:
    _seed(warehouse_url)
    res = CliRunner().invoke(main, ["dlq", "list", "--wide"])
    assert res.exit_code == 0, res.output
    rows = [line for line in res.stdout.splitlines() if "hubspot/contacts" in line]
    assert len(rows) == 2
    assert any(REASON in line for line in rows)
