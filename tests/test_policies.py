"""The policy file: defaults, per-source and per-entity overrides, strict validation, INTEGRATION_POLICIES_FILE."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from integration_assets.policies import (
    DEFAULT_POLICIES_FILE,
    PolicyError,
    format_duration,
    load_policies,
    parse_duration,
)

MINIMAL = """
version: 1
defaults:
  freshness: {warn: 2h, fail: 6h}
  volume: {drop_below: 0.4}
sources:
  hubspot:
    freshness: {fail: 3h}
    entities:
      deals: {freshness: {warn: 1m, fail: 2m}, volume: {min_history: 5}}
checks:
  keys: {severity: ERROR, blocking: true, runbook: fix keys}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policies.yaml"
    p.write_text(text)
    return p


def test_shipped_policies_load_and_cover_every_source_and_check() -> None:
    p = load_policies()
    assert p.path == str(DEFAULT_POLICIES_FILE)
    for system in ("hubspot", "odoo", "stripe", "easypost"):
        f = p.for_entity(system, None).freshness
        assert f.warn is not None and f.warn < f.fail
    assert p.check("keys").blocking and p.check("keys").severity == "ERROR"
    assert p.check("volume").zero_rows_severity == "ERROR"
    for name in (
        "volume",
        "quarantine_rate",
        "dead_letter_backlog",
        "drift",
        "keys",
        "referential_integrity",
        "gx_suite",
        "reconcile_deals_orders",
        "reconcile_customers_companies",
        "reconcile_invoices_payments",
    ):
        assert p.check(name).runbook, name  # type: ignore[arg-type]


def test_overrides_merge_defaults_source_entity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEGRATION_POLICIES_FILE", str(_write(tmp_path, MINIMAL)))
    p = load_policies()
    assert p.for_entity("odoo", "sale.order").freshness.fail == timedelta(hours=6)
    contacts = p.for_entity("hubspot", "contacts")
    # Freshness is a pair: a level that sets it replaces both windows (no warn inherited from a wider default).
    assert (contacts.freshness.warn, contacts.freshness.fail) == (None, timedelta(hours=3))
    deals = p.for_entity("hubspot", "deals")
    assert (deals.freshness.warn, deals.freshness.fail) == (timedelta(minutes=1), timedelta(minutes=2))
    assert deals.volume.min_history == 5 and deals.volume.drop_below == 0.4
    assert p.check("drift").severity == "WARN" and not p.check("drift").blocking  # unlisted: defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL.replace("fail: 6h", "fail: 30s"), "at least 1 minute"),
        (MINIMAL.replace("fail: 3h", "warn: 2h, fail: 1h"), "must be shorter than fail"),
        (MINIMAL.replace("drop_below: 0.4", "drop_belw: 0.4"), "drop_belw"),
        (
            MINIMAL.replace("severity: ERROR, blocking", "severity: WARN, blocking"),
            "blocking check must have severity ERROR",
        ),
        (MINIMAL.replace("fail: 6h", "fail: soon"), "not a duration"),
        ("- just a list", "YAML mapping"),
    ],
)
def test_invalid_policies_are_refused_at_load(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_policies(_write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policies(tmp_path / "nope.yaml")


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("26h") == timedelta(hours=26)
    assert parse_duration(120) == timedelta(minutes=2)
    assert format_duration(timedelta(days=2)) == "2d" and format_duration(timedelta(seconds=90)) == "90s"
