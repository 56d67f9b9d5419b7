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
        "outbound_backlog",
        "outbound_stuck_chains",
        "outbound_reconciliation",
    ):
        assert p.check(name).runbook, name  # type: ignore[arg-type]
    for name in ("outbound_backlog", "outbound_stuck_chains", "outbound_reconciliation"):
        assert "integration-assets outbound" in p.check(name).runbook, name  # type: ignore[arg-type]


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


OUTBOUND = """
outbound:
  trigger: stripe_payment_succeeded
  require_payment: true
  rewin: new_order
  amount_change: update
  cancel_after_label: review
  rate: {choose: named, carrier: USPS, service: Priority}
  parcel: {length: 12, width: 9, height: 3, weight: 20.5}
  from_address: {company: ACME, street1: 1 Main St, city: Springfield, state: IL, zip: "62701"}
  sku_map: {1001: ODOO-1001, WIDGET-A: W-A}
  owner_map: {"77": 3, 88: 4}
  concurrency: {odoo: 2, hubspot: 16}
  attempts: {max: 4, backoff_base: 1s, backoff_cap: 30s}
  stuck: {order_after: 30m, label_after: 1h}
  backlog: {pending_warn: 5, pending_error: 50, oldest_warn: 1m, oldest_error: 10m}
"""


def test_shipped_outbound_policy() -> None:
    o = load_policies().outbound
    assert o.enabled and o.trigger == "hubspot_deal_won" and not o.require_payment
    assert (o.rewin, o.amount_change, o.cancel_after_label) == ("ignore", "flag", "refund")
    assert o.rate.choose == "cheapest" and o.rate.carrier is None
    assert (o.parcel.length, o.parcel.weight) == (10, 16)
    assert o.from_address.zip == "94104" and o.from_address.country == "US"
    assert o.concurrency["odoo"] == o.concurrency.easypost == o.concurrency["hubspot"] == 8
    assert (o.attempts.max, o.attempts.backoff_base, o.attempts.backoff_cap) == (
        10,
        timedelta(seconds=1),
        timedelta(minutes=5),
    )
    assert (o.stuck.order_after, o.stuck.label_after) == (timedelta(hours=2), timedelta(hours=4))
    assert (o.backlog.pending_warn, o.backlog.oldest_error) == (100, timedelta(hours=1))


def test_outbound_defaults_when_the_file_has_no_section(tmp_path: Path) -> None:
    o = load_policies(_write(tmp_path, MINIMAL)).outbound
    assert o.enabled and o.rate.choose == "cheapest" and o.concurrency["easypost"] == 8
    assert o.from_address.street1 and o.odoo_code("SKU-1") == "SKU-1"


def test_outbound_overrides(tmp_path: Path) -> None:
    text = MINIMAL + OUTBOUND
    o = load_policies(_write(tmp_path, text)).outbound
    assert o.trigger == "stripe_payment_succeeded" and o.require_payment and o.rewin == "new_order"
    assert (o.rate.choose, o.rate.carrier, o.rate.service) == ("named", "USPS", "Priority")
    assert o.parcel.weight == 20.5 and o.from_address.country == "US"
    # Unquoted YAML numbers as keys are still the text HubSpot sends.
    assert o.sku_map == {"1001": "ODOO-1001", "WIDGET-A": "W-A"} and o.odoo_code("1001") == "ODOO-1001"
    assert o.owner_map == {"77": 3, "88": 4}
    assert (o.concurrency["odoo"], o.concurrency["easypost"], o.concurrency["hubspot"]) == (2, 8, 16)
    assert o.attempts.backoff_cap == timedelta(seconds=30) and o.stuck.order_after == timedelta(minutes=30)
    with pytest.raises(KeyError):
        o.concurrency["stripe"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            (
                "rate: {choose: named, carrier: USPS, service: Priority}",
                "rate: {choose: named, carrier: USPS}",
            ),
            "needs carrier and service",
        ),
        (("rate: {choose: named,", "rate: {choose: fastest,"), "choose"),
        (("rewin: new_order", "rewin: always"), "rewin"),
        (("backoff_cap: 30s", "backoff_cap: 0s"), "backoff_cap must be >= backoff_base"),
        (("pending_error: 50", "pending_error: 1"), "error thresholds must be >= the warn"),
        (("concurrency: {odoo: 2", "concurrency: {odoo: 0"), "odoo"),
        (("concurrency: {odoo: 2", "concurrency: {odoo: 2, stripe: 1"), "stripe"),
        (("parcel: {length: 12", "parcel: {length: -1"), "length"),
        (("from_address: {company: ACME, ", "from_address: {"), "name or a company"),
        (("  sku_map:", "  skus: {}\n  sku_map:"), "skus"),
    ],
)
def test_invalid_outbound_policy_is_refused(
    tmp_path: Path, change: tuple[str, str], message: str | None
) -> None:
    text = (MINIMAL + OUTBOUND).replace(*change)
    if message is None:
        load_policies(_write(tmp_path, text))
        return
    assert text != MINIMAL + OUTBOUND
    with pytest.raises(PolicyError, match=message):
        load_policies(_write(tmp_path, text))
