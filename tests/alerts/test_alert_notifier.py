"""The notifier end to end on SQLite and PostgreSQL, with every channel talking to a real local peer."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from integration_assets.alerts.delivery import DeliveryRetry
from integration_assets.alerts.incidents import Alert, list_incidents
from integration_assets.alerts.notifier import AlertConfig, Notifier
from integration_assets.warehouse.db import get_engine
from integration_assets.warehouse.schema import alert_deliveries, alert_incidents, metadata

if TYPE_CHECKING:
    from tests.alerts.conftest import HttpReceiver, SmtpSink

KEY = "check:warehouse/contacts:freshness"
CHANNELS = {"log", "webhook", "slack", "email"}


def alert(**overrides: Any) -> Alert:
    values: dict[str, Any] = {
        "key": KEY,
        "severity": "error",
        "title": "Contacts are stale",
        "summary": "No contacts load for 26 h (window 24 h).",
        "source_system": "hubspot",
        "entity": "contacts",
        "check_name": "freshness",
        "details": {"last_load_at": "2026-11-26T07:00:00+00:00", "window_hours": 24},
        "runbook": "https://runbooks.example/freshness",
    }
    values.update(overrides)
    return Alert(**values)


@pytest.fixture
def alert_env(
    warehouse_url: str,
    http_receiver: HttpReceiver,
    slack_receiver: HttpReceiver,
    smtp_server: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.setenv("INTEGRATION_ALERT_WEBHOOK_URL", http_receiver.url)
    monkeypatch.setenv("INTEGRATION_ALERT_SLACK_WEBHOOK_URL", slack_receiver.url)
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_FROM", "alerts@example.com")
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_TO", "oncall@example.com, data@example.com")
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_STARTTLS", "false")  # the local aiosmtpd peer has no TLS here
    return warehouse_url


@pytest.fixture
def notifier(alert_env: str, fast_retry: DeliveryRetry) -> Iterator[Notifier]:
    with Notifier.from_env(retry=fast_retry) as n:
        yield n


def log_lines(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def deliveries(url: str) -> list[dict[str, Any]]:
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.select(alert_deliveries).order_by(alert_deliveries.c.id)).mappings().all()
    return [dict(r) for r in rows]


def test_from_env_builds_every_configured_channel(notifier: Notifier, isolated_env: Path) -> None:
    assert [c.name for c in notifier.channels] == ["log", "webhook", "slack", "email"]
    assert AlertConfig.from_env().log_path == isolated_env / "alerts.jsonl"
    assert "slack_webhook_url" not in repr(AlertConfig.from_env())


def test_only_the_log_is_on_by_default(warehouse_url: str) -> None:
    with Notifier.from_env() as n:
        assert [c.name for c in n.channels] == ["log"]


def test_fire_reaches_every_channel(
    notifier: Notifier,
    http_receiver: HttpReceiver,
    slack_receiver: HttpReceiver,
    smtp_server: SmtpSink,
    isolated_env: Path,
    alert_env: str,
) -> None:
    outcome = notifier.fire(alert())
    assert outcome.action == "opened" and outcome.episode == 1
    assert {d.channel for d in outcome.deliveries if d.status == "sent"} == CHANNELS

    [hook] = http_receiver.requests
    doc = hook.json()
    assert (doc["key"], doc["severity"], doc["status"], doc["episode"]) == (KEY, "error", "firing", 1)
    assert doc["details"]["window_hours"] == 24

    [slack] = slack_receiver.requests
    assert set(slack.json()) == {"text", "blocks"}
    assert slack.json()["blocks"][0]["text"]["text"] == "[FIRING] [ERROR] Contacts are stale"

    [mail] = smtp_server.messages
    assert mail["Subject"] == "[FIRING] [ERROR] Contacts are stale"
    assert "No contacts load for 26 h" in mail.get_content()
    assert smtp_server.envelopes[0].rcpt_tos == ["oncall@example.com", "data@example.com"]

    [line] = log_lines(isolated_env)
    assert line["key"] == KEY and line["id"] == doc["id"]

    rows = deliveries(alert_env)
    assert {(r["channel"], r["kind"], r["status"], r["attempts"]) for r in rows} == {
        (c, "fire", "sent", 1) for c in CHANNELS
    }
    incident = notifier.incident(KEY)
    assert incident is not None and incident.status == "open" and incident.fire_count == 1
    assert incident.opened_at.utcoffset() == timedelta(0) and doc["opened_at"].endswith("+00:00")


def test_firing_again_is_deduplicated(
    notifier: Notifier,
    http_receiver: HttpReceiver,
    slack_receiver: HttpReceiver,
    smtp_server: SmtpSink,
    isolated_env: Path,
    alert_env: str,
) -> None:
    notifier.fire(alert())
    second = notifier.fire(alert(summary="No contacts load for 27 h."))
    third = notifier.fire(alert(summary="No contacts load for 28 h."))
    assert (second.action, third.action) == ("deduplicated", "deduplicated")
    assert second.deliveries == () and third.deliveries == ()
    assert len(http_receiver.requests) == len(slack_receiver.requests) == len(smtp_server.envelopes) == 1
    assert len(log_lines(isolated_env)) == 1
    assert len(deliveries(alert_env)) == len(CHANNELS)
    incident = notifier.incident(KEY)
    assert incident is not None
    assert incident.fire_count == 3 and incident.last_summary == "No contacts load for 28 h."
    assert incident.last_seen_at > incident.opened_at


def test_resolve_sends_one_notice(
    notifier: Notifier, http_receiver: HttpReceiver, smtp_server: SmtpSink, isolated_env: Path, alert_env: str
) -> None:
    notifier.fire(alert())
    resolved = notifier.resolve(KEY, "Contacts loaded 5 min ago.")
    again = notifier.resolve(KEY, "still fine")
    assert resolved.action == "resolved" and resolved.notified
    assert again.action == "not_open" and again.deliveries == ()
    assert [r.json()["status"] for r in http_receiver.requests] == ["firing", "resolved"]
    assert http_receiver.requests[1].json()["summary"] == "Contacts loaded 5 min ago."
    assert [m["Subject"] for m in smtp_server.messages] == [
        "[FIRING] [ERROR] Contacts are stale",
        "[RESOLVED] Contacts are stale",
    ]
    # Fire and resolve mails of one episode thread together.
    assert smtp_server.messages[0]["References"] == smtp_server.messages[1]["References"]
    assert [line["kind"] for line in log_lines(isolated_env)] == ["fire", "resolve"]
    incident = notifier.incident(KEY)
    assert incident is not None and incident.status == "resolved" and incident.resolved_at is not None
    assert notifier.open_incidents() == []


def test_resolve_without_an_open_incident_sends_nothing(
    notifier: Notifier, http_receiver: HttpReceiver, smtp_server: SmtpSink, isolated_env: Path, alert_env: str
) -> None:
    outcome = notifier.resolve("check:never/fired:volume", "fine")
    assert outcome.action == "not_open" and outcome.episode is None and outcome.deliveries == ()
    assert not http_receiver.requests and not smtp_server.envelopes and not log_lines(isolated_env)
    assert deliveries(alert_env) == []


def test_failure_after_resolve_reopens_with_a_new_notice(
    notifier: Notifier, http_receiver: HttpReceiver, isolated_env: Path
) -> None:
    notifier.fire(alert())
    notifier.fire(alert())
    notifier.resolve(KEY, "ok again")
    reopened = notifier.fire(alert(severity="critical", summary="Stale again."))
    dedup = notifier.fire(alert(severity="critical"))
    assert (reopened.action, reopened.episode, dedup.action) == ("reopened", 2, "deduplicated")
    assert [(r.json()["status"], r.json()["episode"]) for r in http_receiver.requests] == [
        ("firing", 1),
        ("resolved", 1),
        ("firing", 2),
    ]
    assert http_receiver.requests[2].json()["severity"] == "critical"
    # A new episode is a new notice (new id), so receivers do not drop it as a duplicate.
    assert len({r.json()["id"] for r in http_receiver.requests}) == 3
    incident = notifier.incident(KEY)
    assert incident is not None
    assert (incident.status, incident.episode, incident.fire_count) == ("open", 2, 2)
    assert incident.first_fired_at < incident.opened_at and incident.resolved_at is None
    assert len(log_lines(isolated_env)) == 3


def test_a_failing_channel_is_retried_recorded_and_isolated(
    notifier: Notifier,
    http_receiver: HttpReceiver,
    slack_receiver: HttpReceiver,
    smtp_server: SmtpSink,
    isolated_env: Path,
    alert_env: str,
) -> None:
    http_receiver.default_status = 500
    outcome = notifier.fire(alert())
    assert outcome.failed_channels == ("webhook",)
    assert len(http_receiver.requests) == 3  # the DeliveryRetry's attempts, then given up
    assert len(slack_receiver.requests) == 1 and len(smtp_server.envelopes) == 1
    assert [line["key"] for line in log_lines(isolated_env)] == [KEY]
    [failed] = [r for r in deliveries(alert_env) if r["status"] == "failed"]
    assert (failed["channel"], failed["attempts"]) == ("webhook", 3)
    assert failed["error"].startswith("transient: HTTP 500")


def test_a_closed_port_fails_only_that_channel(
    alert_env: str,
    closed_port: int,
    fast_retry: DeliveryRetry,
    smtp_server: SmtpSink,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "INTEGRATION_ALERT_SLACK_WEBHOOK_URL", f"http://127.0.0.1:{closed_port}/services/T/B/X"
    )
    with Notifier.from_env(retry=fast_retry) as n:
        outcome = n.fire(alert())
    [slack] = [d for d in outcome.deliveries if d.channel == "slack"]
    assert (slack.status, slack.attempts) == ("failed", 3)
    assert "ConnectError" in (slack.error or "")
    assert str(closed_port) not in (slack.error or "")
    assert {d.channel for d in outcome.deliveries if d.status == "sent"} == {"log", "webhook", "email"}
    assert len(log_lines(isolated_env)) == 1 and len(smtp_server.envelopes) == 1


def test_a_rejected_notice_is_not_retried(notifier: Notifier, http_receiver: HttpReceiver) -> None:
    http_receiver.default_status = 404
    outcome = notifier.fire(alert())
    [hook] = [d for d in outcome.deliveries if d.channel == "webhook"]
    assert (hook.status, hook.attempts) == ("failed", 1)
    assert (hook.error or "").startswith("terminal: HTTP 404")


def test_a_channel_that_missed_the_notice_is_caught_up_later(
    alert_env: str,
    fast_retry: DeliveryRetry,
    http_receiver: HttpReceiver,
    slack_receiver: HttpReceiver,
    isolated_env: Path,
) -> None:
    http_receiver.default_status = 503
    with Notifier.from_env(retry=fast_retry, catch_up_after=timedelta(0)) as n:
        n.fire(alert())
        assert len(http_receiver.requests) == 3
        http_receiver.default_status = 200
        later = n.fire(alert())
        assert later.action == "deduplicated"
        assert [(d.channel, d.status) for d in later.deliveries] == [("webhook", "sent")]
        assert n.fire(alert()).deliveries == ()  # everyone has it now
    ids = {r.json()["id"] for r in http_receiver.requests}
    assert len(ids) == 1  # the caught-up notice is the same notice (same idempotency key)
    assert len(slack_receiver.requests) == 1 and len(log_lines(isolated_env)) == 1


def test_catch_up_waits_for_an_in_flight_delivery_and_gives_up_eventually(
    alert_env: str, fast_retry: DeliveryRetry, http_receiver: HttpReceiver
) -> None:
    http_receiver.default_status = 500
    with Notifier.from_env(retry=fast_retry) as n:  # default catch_up_after: 60 s
        n.fire(alert())
        assert n.fire(alert()).deliveries == ()
    assert len(http_receiver.requests) == 3
    with Notifier.from_env(retry=fast_retry, catch_up_after=timedelta(0), max_delivery_rounds=2) as n:
        assert [d.channel for d in n.fire(alert()).deliveries] == ["webhook"]
        assert n.fire(alert()).deliveries == ()  # two rounds failed: the log and the table have it
    assert len(http_receiver.requests) == 6


def test_renotify_interval(alert_env: str, fast_retry: DeliveryRetry, http_receiver: HttpReceiver) -> None:
    now = [datetime(2026, 11, 27, 9, 0, tzinfo=UTC)]
    with Notifier.from_env(retry=fast_retry, renotify_after=timedelta(minutes=30), clock=lambda: now[0]) as n:
        n.fire(alert())
        now[0] += timedelta(minutes=20)
        assert n.fire(alert()).action == "deduplicated"
        now[0] += timedelta(minutes=15)
        renotified = n.fire(alert())
        now[0] += timedelta(minutes=1)
        assert n.fire(alert()).action == "deduplicated"
    assert renotified.action == "renotified" and renotified.notified
    docs = [r.json() for r in http_receiver.requests]
    assert [(d["renotify"], d["fire_count"]) for d in docs] == [(False, 1), (True, 3)]
    assert docs[0]["id"] != docs[1]["id"]


def test_renotify_is_read_from_the_environment(alert_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert AlertConfig.from_env().renotify_after is None
    monkeypatch.setenv("INTEGRATION_ALERT_RENOTIFY_SECONDS", "3600")
    assert AlertConfig.from_env().renotify_after == timedelta(hours=1)
    with Notifier.from_env() as n:
        assert n.renotify_after == timedelta(hours=1)


CANARIES = [
    "jane.doe@example.com",
    "4242424242424242",
    "4242 4242 4242 4242",
    "078-05-1120",
    "sk_live_51CanaryKeyAbcdefGHIJ",
    "whsec_CanarySigningSecret123",
    "Bearer canarytoken.abcdef",
    "hunter2-canary",
    "+1 415 555 0133",
]


def test_secrets_and_pii_never_leave_in_any_channel(
    notifier: Notifier,
    http_receiver: HttpReceiver,
    slack_receiver: HttpReceiver,
    smtp_server: SmtpSink,
    isolated_env: Path,
    alert_env: str,
) -> None:
    dirty = alert(
        key="check:stripe/payments:contract jane.doe@example.com",
        title="Payment 4242424242424242 rejected for jane.doe@example.com",
        summary=(
            "Row had card 4242 4242 4242 4242, ssn 078-05-1120, phone +1 415 555 0133; "
            "auth Authorization: Bearer canarytoken.abcdef with sk_live_51CanaryKeyAbcdefGHIJ"
            "\r\nBcc: attacker@evil.example\r\n\r\nforged body"
        ),
        entity="payments\nX-Injected: 1",
        details={
            "row": {"email": "jane.doe@example.com", "card": "4242424242424242", "note": "ssn 078-05-1120"},
            "password": "hunter2-canary",
            "error": "signature check failed for whsec_CanarySigningSecret123",
            "dsn": "postgresql://loader:hunter2-canary@db.internal/wh",
            "samples": ["call +1 415 555 0133", 4242424242424242],
        },
    )
    notifier.fire(dirty)
    notifier.resolve(dirty.key, "resolved for jane.doe@example.com\r\nBcc: attacker@evil.example")

    outputs: dict[str, str] = {
        "webhook": "\n".join(r.body.decode() for r in http_receiver.requests),
        "slack": "\n".join(r.body.decode() for r in slack_receiver.requests),
        "email": "\n".join(str(m) + m.get_content() for m in smtp_server.messages)
        + "\n".join((e.original_content or b"").decode() for e in smtp_server.envelopes),
        "log": (isolated_env / "alerts.jsonl").read_text(),
    }
    with get_engine(alert_env).connect() as conn:
        outputs["db"] = json.dumps(
            [dict(r) for r in conn.execute(sa.select(alert_incidents)).mappings()]
            + [dict(r) for r in conn.execute(sa.select(alert_deliveries)).mappings()],
            default=str,
        )
    for where, text in outputs.items():
        for canary in CANARIES:
            assert canary not in text, f"{canary!r} leaked into {where}"
    assert len(http_receiver.requests) == len(slack_receiver.requests) == 2
    # CR/LF injection: no forged header or body in the mail, no extra line in the log.
    for msg in smtp_server.messages:
        assert msg["Bcc"] is None and msg["X-Injected"] is None
        assert "\n" not in msg["Subject"]
        assert not any(line.startswith("Bcc:") for line in msg.get_content().splitlines())
    assert smtp_server.envelopes[0].rcpt_tos == ["oncall@example.com", "data@example.com"]
    assert len((isolated_env / "alerts.jsonl").read_text().splitlines()) == 2
    for doc in log_lines(isolated_env):
        assert "\n" not in doc["summary"] and "\r" not in doc["summary"] and "\n" not in (doc["entity"] or "")
    assert "[REDACTED:pan]" in outputs["webhook"] and "[REDACTED:email]" in outputs["webhook"]


def test_concurrent_fires_send_one_notice(
    alert_env: str, fast_retry: DeliveryRetry, http_receiver: HttpReceiver
) -> None:
    barrier = threading.Barrier(4)
    actions: list[str] = []

    def worker() -> None:
        with Notifier.from_env(retry=fast_retry) as n:
            barrier.wait()
            actions.append(n.fire(alert()).action)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(actions) == ["deduplicated"] * 3 + ["opened"]
    assert len(http_receiver.requests) == 1


def test_list_incidents(notifier: Notifier, alert_env: str) -> None:
    notifier.fire(alert())
    notifier.fire(alert(key="check:odoo/invoices:volume", severity="warning", source_system="odoo"))
    notifier.resolve("check:odoo/invoices:volume", "ok")
    assert [i.key for i in list_incidents(engine=get_engine(alert_env))] == [KEY]
    assert {i.key for i in list_incidents(None, engine=get_engine(alert_env))} == {
        KEY,
        "check:odoo/invoices:volume",
    }


@pytest.mark.parametrize(
    ("field", "value"), [("severity", "fatal"), ("key", ""), ("key", "k" * 256), ("title", "")]
)
def test_alert_validates(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        alert(**{field: value})


def test_migration_matches_the_table_definitions(warehouse_url: str) -> None:
    ours = {"alert_incidents", "alert_deliveries"}
    with get_engine(warehouse_url).connect() as conn:
        assert ours <= set(sa.inspect(conn).get_table_names())
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)

    def touches_ours(d: Any) -> bool:
        return any(name in repr(d) for name in ours)

    assert [d for d in diff if touches_ours(d)] == []


def test_alerts_and_observability_do_not_import_dagster() -> None:
    code = (
        "import sys, integration_assets.alerts.notifier, integration_assets.observability.redact;"
        "bad = [m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
