"""Redaction: what must go (secrets, PII, line breaks) and what must stay (ids, dates, amounts)."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from integration_assets.observability.redact import MASK, luhn_valid, redact, redact_text


@pytest.mark.parametrize(
    ("text", "canary"),
    [
        ("contact jane.doe+crm@example.co.uk failed", "jane.doe+crm@example.co.uk"),
        ("card 4242424242424242 declined", "4242424242424242"),
        ("card 4242 4242 4242 4242 declined", "4242 4242 4242 4242"),
        ("card 4000-0566-5566-5556 declined", "4000-0566-5566-5556"),
        ("amex 378282246310005", "378282246310005"),
        ("ssn 078-05-1120 on file", "078-05-1120"),
        ("key sk_live_51HxYzAbCdEfGh used", "sk_live_51HxYzAbCdEfGh"),
        ("key rk_test_abcdef123456 used", "rk_test_abcdef123456"),
        ("secret whsec_abc123DEF456ghi", "whsec_abc123DEF456ghi"),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ("dsn postgresql+psycopg://loader:pa55w0rd@db:5432/wh", "pa55w0rd"),
        ("GET /x?access_token=tok123456&page=2", "tok123456"),
        ('{"password": "hunter2"}', "hunter2"),
        ("hook https://hooks.slack.com/services/T0001/B0001/XXXXXXXX", "T0001/B0001/XXXXXXXX"),
        ("call +44 20 7946 0958 now", "+44 20 7946 0958"),
        ("call (415) 555-0132 now", "(415) 555-0132"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJhbGciOiJIUzI1NiJ9"),
        ("token xoxb-123456789012-abcdefABCDEF", "xoxb-123456789012"),
    ],
)
def test_canaries_are_masked(text: str, canary: str) -> None:
    out = redact_text(text)
    assert canary not in out
    assert redact_text(out) == out  # idempotent: the incident key of a redacted alert stays stable


@pytest.mark.parametrize(
    "text",
    [
        "check:warehouse/contacts:freshness",
        "load 01JD5X3K7Q run 9f1c2b7e-1d2a-4c5b-9e8f-0a1b2c3d4e5f",
        "2026-11-27T09:00:00+00:00 and 2026-11-27 09:00:00.123456",
        "ts 1767225600000, order 1234567890123, id 20260102120000",
        "amount 1234.56 EUR, 12 rows, 3 of 200000",
        "version 1.13.27 from 192.168.1.10",
        "4242424242424241 fails the Luhn check",
    ],
)
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_line_breaks_and_controls_are_neutralised() -> None:
    out = redact_text('ok\r\n{"level": "CRITICAL"}\u2028x\x00y\x1b[31m')
    assert out == 'ok {"level": "CRITICAL"} x y [31m'


def test_luhn() -> None:
    assert luhn_valid("4242424242424242") and luhn_valid("378282246310005")
    assert not luhn_valid("4242424242424241") and not luhn_valid("42a2")


def test_dicts_are_walked_and_sensitive_keys_masked() -> None:
    out = redact(
        {
            "password": "x",
            "Api-Key": "y",
            "customer_email": "plain-looking-value",
            "phone": "0612345678",
            "email_null_count": 3,
            "token": None,
            "is_company": True,
            "rows": [{"first_name": "Jane", "note": "mail jane@example.com"}],
            "jane@example.com": "keys are redacted too",
            "value": 4242424242424242,
            "when": dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
            "amount": decimal.Decimal("12.50"),
            "tags": {"b", "a"},
        }
    )
    assert out == {
        "password": MASK,
        "Api-Key": MASK,
        "customer_email": MASK,
        "phone": MASK,
        "email_null_count": 3,
        "token": None,
        "is_company": True,
        "rows": [{"first_name": MASK, "note": MASK}],  # free text: masked whatever it holds
        "[REDACTED:email]": "keys are redacted too",
        "value": "[REDACTED:pan]",
        "when": "2026-11-27T00:00:00+00:00",
        "amount": "12.50",
        "tags": ["a", "b"],
    }


def test_deep_nesting_is_cut_off() -> None:
    value: dict[str, object] = {}
    cursor = value
    for _ in range(50):
        cursor["n"] = {}
        cursor = cursor["n"]  # type: ignore[assignment]
    assert "[TRUNCATED:depth]" in repr(redact(value))


def test_ids_and_business_keys_are_kept_personal_data_is_not() -> None:
    out = redact(
        {
            "deal_id": 4242424242424242,  # Luhn-valid, but an id under an id key
            "natural_key": "48213377905",
            "source_id": "pi_3NxAbc123",
            "company_ids": [20488734571, 20488734572],
            "order_key": "S00042",
            "id": "ann@example.com",  # not shaped like an id: redacted as text
            "Last Name": "Smithers",
            "Phone Number": "0612345678",
            "address": {"street1": "12 Elm Road", "city": "Leeds", "zip": "LS1 4AP"},
            "notes": "called about the invoice",
            "firstname": "Ann",
        }
    )
    assert out == {
        "deal_id": 4242424242424242,
        "natural_key": "48213377905",
        "source_id": "pi_3NxAbc123",
        "company_ids": [20488734571, 20488734572],
        "order_key": "S00042",
        "id": "[REDACTED:email]",
        "Last Name": MASK,
        "Phone Number": MASK,
        "address": MASK,
        "notes": MASK,
        "firstname": MASK,
    }
