"""Each channel against a real local peer: wire format, error classification, no URL in errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from integration_assets.alerts.channels import (
    SLACK_HEADER_MAX,
    JsonlAlertLog,
    SlackWebhookChannel,
    WebhookChannel,
    http_client,
    slack_payload,
)
from integration_assets.alerts.mail import EmailChannel
from integration_assets.alerts.notification import (
    Notification,
    TerminalDeliveryError,
    TransientDeliveryError,
)

if TYPE_CHECKING:
    from tests.alerts.conftest import HttpReceiver, SmtpSink

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def notice(**overrides: object) -> Notification:
    values: dict[str, object] = {
        "id": "n" * 32,
        "kind": "fire",
        "key": "check:warehouse/contacts:freshness",
        "severity": "error",
        "title": "Contacts are stale",
        "summary": "No contacts load for 26 h (window 24 h).",
        "source_system": "hubspot",
        "entity": "contacts",
        "check_name": "freshness",
        "details": {"last_load_at": "2026-11-26T07:00:00+00:00", "window_hours": 24},
        "runbook": "https://runbooks.example/freshness",
        "episode": 1,
        "fire_count": 1,
        "opened_at": T0,
        "at": T0,
    }
    values.update(overrides)
    return Notification(**values)  # type: ignore[arg-type]


def test_http_client_has_timeouts_and_never_follows_redirects() -> None:
    with http_client() as client:
        assert client.timeout.read is not None and client.timeout.connect is not None
        assert client.follow_redirects is False


def test_webhook_posts_the_notification_json(http_receiver: HttpReceiver) -> None:
    with http_client() as client:
        WebhookChannel(http_receiver.url, client).send(notice())
    [req] = http_receiver.requests
    body = req.json()
    assert body["schema"] == "integration-assets.alert.v1"
    assert body["status"] == "firing"
    assert body["key"] == "check:warehouse/contacts:freshness"
    assert body["details"] == {"last_load_at": "2026-11-26T07:00:00+00:00", "window_hours": 24}
    assert req.headers["content-type"].startswith("application/json")
    assert req.headers["idempotency-key"] == "n" * 32


def test_webhook_redirect_is_not_followed(http_receiver: HttpReceiver, slack_receiver: HttpReceiver) -> None:
    http_receiver.respond(307, Location=slack_receiver.url)
    with http_client() as client, pytest.raises(TerminalDeliveryError, match="redirect not followed"):
        WebhookChannel(http_receiver.url, client).send(notice())
    assert len(http_receiver.requests) == 1 and not slack_receiver.requests


def test_webhook_errors_are_classified(http_receiver: HttpReceiver) -> None:
    with http_client() as client:
        channel = WebhookChannel(http_receiver.url, client)
        http_receiver.respond(503, b"busy", Retry_After="2")
        with pytest.raises(TransientDeliveryError) as transient:
            channel.send(notice())
        assert transient.value.retry_after == 2.0
        http_receiver.respond(429, b"slow down")
        with pytest.raises(TransientDeliveryError):
            channel.send(notice())
        http_receiver.respond(404, b"no such hook")
        with pytest.raises(TerminalDeliveryError, match="HTTP 404"):
            channel.send(notice())


def test_webhook_connection_refused_is_transient_and_hides_the_url(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/hooks/T0/B0/sekret-path-token"
    with http_client() as client, pytest.raises(TransientDeliveryError) as err:
        WebhookChannel(url, client).send(notice())
    assert "sekret-path-token" not in str(err.value)


def test_webhook_url_must_be_http() -> None:
    with http_client() as client, pytest.raises(ValueError):
        WebhookChannel("file:///etc/passwd", client)


def test_slack_payload_follows_block_kit(slack_receiver: HttpReceiver) -> None:
    with http_client() as client:
        SlackWebhookChannel(slack_receiver.url, client).send(notice(title="T" * 400, summary="a < b & c > d"))
    body = slack_receiver.requests[0].json()
    assert set(body) == {"text", "blocks"}
    assert isinstance(body["text"], str) and body["text"]
    types = [b["type"] for b in body["blocks"]]
    assert types[0] == "header" and types[-1] == "context" and "section" in types
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text" and len(header["text"]) <= SLACK_HEADER_MAX
    summary = body["blocks"][1]["text"]
    assert summary == {"type": "mrkdwn", "text": "a &lt; b &amp; c &gt; d"}
    fields = body["blocks"][2]["fields"]
    assert 1 <= len(fields) <= 10 and all(f["type"] == "mrkdwn" for f in fields)
    assert "<https://runbooks.example/freshness|runbook>" in body["blocks"][-1]["elements"][0]["text"]


def test_slack_resolve_payload_has_no_details() -> None:
    body = slack_payload(notice(kind="resolve"))
    assert body["blocks"][0]["text"]["text"].startswith("[RESOLVED]")
    assert not any("```" in json.dumps(b) for b in body["blocks"])


def test_jsonl_log_appends_one_line_per_notice(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "alerts.jsonl"
    channel = JsonlAlertLog(path)
    channel.send(notice())
    channel.send(notice(kind="resolve", summary="back\u2028to normal"))
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert [json.loads(line)["status"] for line in lines[:2]] == ["firing", "resolved"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_email_is_delivered(smtp_server: SmtpSink) -> None:
    channel = EmailChannel(
        smtp_server.host, smtp_server.port, "alerts@example.com", ["oncall@example.com"], starttls=False
    )
    channel.send(notice())
    [msg] = smtp_server.messages
    assert msg["Subject"] == "[FIRING] [ERROR] Contacts are stale"
    assert msg["X-Alert-Key"] == "check:warehouse/contacts:freshness"
    assert msg["References"].startswith("<incident-")
    body = msg.get_content()
    assert "No contacts load for 26 h" in body and "https://runbooks.example/freshness" in body
    assert smtp_server.envelopes[0].rcpt_tos == ["oncall@example.com"]


def test_email_starttls_and_auth(starttls_smtp_server, tls_files, monkeypatch: pytest.MonkeyPatch) -> None:
    sink, auth = starttls_smtp_server
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files.cert))  # trust the test CA the way an operator would
    EmailChannel(
        sink.host,
        sink.port,
        "alerts@example.com",
        ["oncall@example.com"],
        username="alerts",
        password="s3cret-pass",
        starttls=True,
    ).send(notice())
    assert len(sink.envelopes) == 1 and auth.seen


def test_email_starttls_required_but_unsupported_is_terminal(smtp_server: SmtpSink) -> None:
    channel = EmailChannel(
        smtp_server.host, smtp_server.port, "alerts@example.com", ["oncall@example.com"], starttls=True
    )
    with pytest.raises(TerminalDeliveryError, match="STARTTLS|starttls"):
        channel.send(notice())
    assert not smtp_server.envelopes  # never falls back to clear text


def test_email_untrusted_certificate_is_terminal(starttls_smtp_server) -> None:
    sink, _ = starttls_smtp_server
    channel = EmailChannel(
        sink.host,
        sink.port,
        "alerts@example.com",
        ["oncall@example.com"],
        username="alerts",
        password="s3cret-pass",
        starttls=True,
    )
    with pytest.raises(TerminalDeliveryError, match="TLS"):
        channel.send(notice())


def test_email_refuses_credentials_in_clear_text_to_a_remote_host() -> None:
    with pytest.raises(ValueError, match="STARTTLS"):
        EmailChannel(
            "smtp.example.com",
            25,
            "a@example.com",
            ["b@example.com"],
            username="u",
            password="p",
            starttls=False,
        )


def test_email_connection_refused_is_transient(closed_port: int) -> None:
    channel = EmailChannel(
        "127.0.0.1", closed_port, "a@example.com", ["b@example.com"], starttls=False, timeout=2
    )
    with pytest.raises(TransientDeliveryError):
        channel.send(notice())
