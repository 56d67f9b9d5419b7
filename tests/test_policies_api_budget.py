"""policies.yaml ``api_budget:`` and ``partitions:`` (issue 13): shipped values, defaults, strict validation."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from integration_assets.policies import PolicyError, load_policies

MINIMAL = """
version: 1
defaults:
  freshness: {warn: 2h, fail: 6h}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policies.yaml"
    p.write_text(text)
    return p


def test_shipped_budgets_and_partitions() -> None:
    p = load_policies()
    hubspot = p.api_budget["hubspot"]
    assert (hubspot.per_window, hubspot.window, hubspot.daily) == (100, timedelta(seconds=10), 250_000)
    assert hubspot.backfill_share == 0.5 and hubspot.backfill_per_window == 50
    assert p.api_budget["odoo"].daily is None and p.api_budget["stripe"].window == timedelta(seconds=1)
    assert p.partitions.start_for("hubspot") == date(2026, 9, 1)
    assert (p.partitions.max_partitions_per_run, p.partitions.late_edits) == (10, 1)


def test_defaults_when_the_file_has_neither_section(tmp_path: Path) -> None:
    p = load_policies(_write(tmp_path, MINIMAL))
    assert set(p.api_budget) == {"hubspot", "odoo", "stripe"}
    assert p.api_budget["hubspot"].per_window == 100 and p.partitions.start == date(2026, 9, 1)


def test_overrides(tmp_path: Path) -> None:
    text = MINIMAL + (
        "api_budget:\n  hubspot: {per_window: 10, window: 1s, backfill_share: 0.2}\n"
        "partitions:\n  start: 2026-10-01\n  sources: {stripe: {start: 2026-11-15}}\n"
        "  max_partitions_per_run: 3\n  late_edits: 0\n"
    )
    p = load_policies(_write(tmp_path, text))
    assert set(p.api_budget) == {"hubspot"}  # a file that names the section names every budget
    assert p.api_budget["hubspot"].backfill_per_window == 2
    assert p.partitions.start_for("stripe") == date(2026, 11, 15)
    assert p.partitions.start_for("hubspot") == date(2026, 10, 1)
    assert (p.partitions.max_partitions_per_run, p.partitions.late_edits) == (3, 0)


def test_a_tiny_share_still_lets_a_backfill_move(tmp_path: Path) -> None:
    text = MINIMAL + "api_budget:\n  odoo: {per_window: 3, window: 10s, backfill_share: 0.1}\n"
    assert load_policies(_write(tmp_path, text)).api_budget["odoo"].backfill_per_window == 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("api_budget:\n  hubspot: {per_window: 100, window: 10s, burst: 3}\n", "burst"),
        ("api_budget:\n  hubspot: {per_window: 0, window: 10s}\n", "per_window"),
        ("api_budget:\n  hubspot: {per_window: 10, window: 10s, backfill_share: 1.5}\n", "backfill_share"),
        ("api_budget:\n  hubspot: {per_window: 10, window: 2d}\n", "between 0.1s and 1d"),
        ("api_budget:\n  hubspot: {per_window: 10, window: 10s, daily: 5}\n", "daily must be at least"),
        ("api_budget:\n  HubSpot: {per_window: 10, window: 10s}\n", "not a system name"),
        ("partitions:\n  start: soon\n", "start"),
        ("partitions:\n  max_partitions_per_run: 0\n", "max_partitions_per_run"),
        ("partitions:\n  sources: {hubspot: {begin: 2026-10-01}}\n", "begin"),
        ("partitions:\n  late: 1\n", "late"),
    ],
)
def test_invalid(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policies(_write(tmp_path, MINIMAL + section))
