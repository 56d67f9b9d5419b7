"""``integration-assets contracts list``: one aligned row per contract version."""

from __future__ import annotations

from click.testing import CliRunner

from integration_assets.cli import main
from integration_assets.contracts.spec import all_contracts


def test_contracts_list_is_an_aligned_table() -> None:
    res = CliRunner().invoke(main, ["contracts", "list"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if "@v" in line]
    assert len(lines) == len(all_contracts())
    header = next(line for line in res.stdout.splitlines() if "inbox folder" in line)
    for col in ("inbox folder", "formats", "delivery", "table"):
        start = header.index(col)
        # Every row has a value starting exactly under the column's title, after a blank.
        assert all(line[start - 1] == " " and line[start] != " " for line in lines), col
    assert any("hubspot/contacts" in line and "contacts" in line.split()[-1] for line in lines)
