"""Signature checks per provider, on raw bytes (docs/SOURCES.md §1.5, §3.5, §4.3)."""

from __future__ import annotations

import json
import time
import unicodedata

import pytest

from integration_assets.providers import base, easypost, hubspot, stripe
from tests.webhooks.conftest import (
    EASYPOST_SECRET,
    HUBSPOT_SECRET,
    STRIPE_OLD_SECRET,
    STRIPE_SECRET,
    stripe_event,
)

NOW = 1_723_566_000.0


def clock() -> float:
    return NOW


# ----------------------------------------------------------------------------------------------- Stripe
def test_stripe_valid_signature_returns_the_timestamp() -> None:
    body = stripe_event()
    header = stripe.sign(body, STRIPE_SECRET, int(NOW))
    assert stripe.verify(body, header, [STRIPE_SECRET], clock=clock) == int(NOW)


def test_stripe_any_v1_under_any_active_secret_passes_v0_is_ignored() -> None:
    body = stripe_event()
    old = stripe.sign(body, STRIPE_OLD_SECRET, int(NOW)).split("v1=")[1]
    new = stripe.sign(body, STRIPE_SECRET, int(NOW)).split("v1=")[1]
    rotating = f"t={int(NOW)},v1={'0' * 64},v1={new},v0={old}"
    assert stripe.verify(body, rotating, [STRIPE_SECRET], clock=clock)
    # Our side mid-rotation: both secrets configured, Stripe still signing with the old one.
    assert stripe.verify(
        body,
        f"t={int(NOW)},v1={old}",
        stripe.parse_secrets(f" {STRIPE_SECRET} , {STRIPE_OLD_SECRET} "),
        clock=clock,
    )
    # v0 alone is the test scheme, never accepted.
    with pytest.raises(base.MalformedSignature):
        stripe.verify(body, f"t={int(NOW)},v0={old}", [STRIPE_OLD_SECRET], clock=clock)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, base.MissingSignature),
        ("", base.MissingSignature),
        ("garbage", base.MalformedSignature),
        (f"v1={'a' * 64}", base.MalformedSignature),  # no t
        (f"t={int(NOW)}", base.MalformedSignature),  # no v1
        (f"t=yesterday,v1={'a' * 64}", base.MalformedSignature),
        (f"t={int(NOW)},v1={'a' * 64}", base.InvalidSignature),
        (f"t={int(NOW)},v1=not-hex-é", base.InvalidSignature),
        ("t=1," + ",".join(["v1=aa"] * 40), base.MalformedSignature),
    ],
)
def test_stripe_bad_headers(header: str | None, error: type[base.SignatureError]) -> None:
    with pytest.raises(error):
        stripe.verify(stripe_event(), header, [STRIPE_SECRET], clock=clock)


def test_stripe_reserialised_body_fails() -> None:
    body = stripe_event()
    header = stripe.sign(body, STRIPE_SECRET, int(NOW))
    reserialised = json.dumps(json.loads(body), indent=2).encode()
    with pytest.raises(base.InvalidSignature):
        stripe.verify(reserialised, header, [STRIPE_SECRET], clock=clock)


@pytest.mark.parametrize(
    ("offset_s", "error"),
    [(-301, base.StaleTimestamp), (600, base.FutureTimestamp), (301, base.FutureTimestamp)],
)
def test_stripe_window_is_300s_both_ways(offset_s: int, error: type[base.SignatureError]) -> None:
    body = stripe_event()
    header = stripe.sign(body, STRIPE_SECRET, int(NOW) + offset_s)
    with pytest.raises(error):
        stripe.verify(body, header, [STRIPE_SECRET], clock=clock)
    assert error.status == 400


@pytest.mark.parametrize("offset_s", [-300, -299, 0, 299, 300])
def test_stripe_inside_the_window_passes(offset_s: int) -> None:
    body = stripe_event()
    header = stripe.sign(body, STRIPE_SECRET, int(NOW) + offset_s)
    stripe.verify(body, header, [STRIPE_SECRET], clock=clock)


def test_stripe_without_configured_secret_rejects() -> None:
    body = stripe_event()
    with pytest.raises(base.InvalidSignature):
        stripe.verify(body, stripe.sign(body, STRIPE_SECRET, int(NOW)), [], clock=clock)


# ---------------------------------------------------------------------------------------------- HubSpot
URI = "https://hooks.example.com/webhooks/hubspot"


def _hubspot(**overrides: object) -> dict[str, object]:
    body = b'[{"eventId":1,"subscriptionType":"contact.propertyChange"}]'
    ts = str(int(NOW * 1000))
    kwargs: dict[str, object] = {
        "method": "POST",
        "uri": URI,
        "body": body,
        "timestamp": ts,
        "client_secret": HUBSPOT_SECRET,
        "clock": clock,
        "signature": hubspot.sign("POST", URI, body, int(ts), HUBSPOT_SECRET),
    }
    kwargs.update(overrides)
    return kwargs


def test_hubspot_v3_matches_the_official_algorithm() -> None:
    import base64
    import hashlib
    import hmac

    kwargs = _hubspot()
    source = f"POST{URI}{kwargs['body'].decode()}{kwargs['timestamp']}"  # type: ignore[union-attr]
    expected = base64.b64encode(
        hmac.new(HUBSPOT_SECRET.encode(), source.encode(), hashlib.sha256).digest()
    ).decode()
    assert kwargs["signature"] == expected
    assert hubspot.verify(**kwargs) == int(NOW * 1000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"signature": None}, base.MissingSignature),
        ({"timestamp": None}, base.MissingSignature),
        ({"timestamp": "17235660001.5"}, base.MalformedSignature),
        ({"uri": URI + "?x=1"}, base.InvalidSignature),
        ({"method": "PUT"}, base.InvalidSignature),
        ({"body": b'[{"eventId":2,"subscriptionType":"contact.propertyChange"}]'}, base.InvalidSignature),
        ({"client_secret": "other"}, base.InvalidSignature),
        ({"signature": "A" * 300}, base.MalformedSignature),
    ],
)
def test_hubspot_bad_requests(overrides: dict[str, object], error: type[base.SignatureError]) -> None:
    with pytest.raises(error):
        hubspot.verify(**_hubspot(**overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(("offset_s", "error"), [(-301, base.StaleTimestamp), (600, base.FutureTimestamp)])
def test_hubspot_timestamp_window(offset_s: int, error: type[base.SignatureError]) -> None:
    body = b"[]"
    ts = int((NOW + offset_s) * 1000)
    signature = hubspot.sign("POST", URI, body, ts, HUBSPOT_SECRET)
    with pytest.raises(error):
        hubspot.verify(**_hubspot(body=body, timestamp=str(ts), signature=signature))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- EasyPost
def test_easypost_signs_with_the_nfkd_secret() -> None:
    body = b'{"id":"evt_1","description":"tracker.updated"}'
    nfkd = unicodedata.normalize("NFKD", EASYPOST_SECRET)
    assert nfkd != EASYPOST_SECRET
    import hashlib
    import hmac

    header = "hmac-sha256-hex=" + hmac.new(nfkd.encode(), body, hashlib.sha256).hexdigest()
    assert easypost.sign(body, EASYPOST_SECRET) == header
    easypost.verify(body, header, EASYPOST_SECRET)
    easypost.verify(body, header.upper().replace("HMAC-SHA256-HEX=", "hmac-sha256-hex="), EASYPOST_SECRET)
    # Signed with the secret's raw (composed) bytes: not what EasyPost sends, refused.
    raw = "hmac-sha256-hex=" + hmac.new(EASYPOST_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with pytest.raises(base.InvalidSignature):
        easypost.verify(body, raw, EASYPOST_SECRET)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, base.MissingSignature),
        ("deadbeef", base.MalformedSignature),
        ("sha256=deadbeef", base.MalformedSignature),
        ("hmac-sha256-hex=" + "0" * 64, base.InvalidSignature),
    ],
)
def test_easypost_bad_headers(header: str | None, error: type[base.SignatureError]) -> None:
    with pytest.raises(error):
        easypost.verify(b"{}", header, EASYPOST_SECRET)


def test_errors_never_echo_secrets_or_signatures() -> None:
    body = stripe_event()
    header = stripe.sign(body, "whsec_other", int(time.time()))
    with pytest.raises(base.SignatureError) as info:
        stripe.verify(body, header, [STRIPE_SECRET])
    assert STRIPE_SECRET not in str(info.value) and header.split("v1=")[1] not in str(info.value)
