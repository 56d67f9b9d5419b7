"""Config lives in one place: every variable the code reads is registered, documented and in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from integration_assets.settings import ENV_VARS, get_settings, is_set, render_env_example

ROOT = Path(__file__).parent.parent


def _env_example_names() -> set[str]:
    names = set()
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]+)=", line)
        if m:
            names.add(m.group(1))
    return names


def _names_read_in_code() -> set[str]:
    pattern = re.compile(
        r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|EnvVar\()\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    found = set()
    for path in (ROOT / "integration_assets").rglob("*.py"):
        found.update(pattern.findall(path.read_text()))
    return found


def test_every_registered_variable_is_in_env_example() -> None:
    assert set(ENV_VARS) <= _env_example_names()
    assert (ROOT / ".env.example").read_text() == render_env_example(), (
        "python -m integration_assets.settings > .env.example"
    )


def test_code_reads_only_registered_variables() -> None:
    unregistered = _names_read_in_code() - set(ENV_VARS)
    assert not unregistered, f"register these in settings.ENV_VARS and .env.example: {sorted(unregistered)}"


def test_defaults_live_under_the_data_dir(isolated_env: Path) -> None:
    s = get_settings()
    assert s.warehouse_url == f"sqlite:///{isolated_env.resolve() / 'warehouse.db'}"
    assert s.inbox_dir == isolated_env.resolve() / "inbox"
    assert s.queue_url == "sql"


def test_typed_properties_read_the_snapshot(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_TO", "a@example.com; b@example.com,")
    monkeypatch.setenv("INTEGRATION_WEBHOOK_PUBLIC_URL", "https://hooks.example.com/")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "hs-secret")
    monkeypatch.delenv("DAGSTER_HOME")
    s = get_settings()
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_TO", "changed@example.com")  # a snapshot: later changes unseen
    assert s.alert_smtp_to == ("a@example.com", "b@example.com")
    assert s.webhook_public_url == "https://hooks.example.com"
    assert s.inbox_alert_attempts == 4 and s.load_lease_seconds == 600.0
    assert s.alert_smtp_starttls is True
    assert s.alert_log == isolated_env.resolve() / "alerts.jsonl"
    assert s.dagster_home == isolated_env.resolve() / "dagster"
    assert s.policies_file is None
    assert "hs-secret" not in repr(s) and s.hubspot_client_secret == "hs-secret"


def test_a_bad_value_fails_where_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTEGRATION_ALERT_SMTP_STARTTLS", "maybe")
    s = get_settings()  # the rest of the settings still work
    with pytest.raises(ValueError, match="INTEGRATION_ALERT_SMTP_STARTTLS"):
        _ = s.alert_smtp_starttls


def test_is_set_means_set_and_not_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_set("INTEGRATION_WAREHOUSE_URL")
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", "")
    assert not is_set("INTEGRATION_WAREHOUSE_URL")
    monkeypatch.setenv("INTEGRATION_WAREHOUSE_URL", "sqlite:///x.db")
    assert is_set("INTEGRATION_WAREHOUSE_URL")
    with pytest.raises(KeyError):
        is_set("NOT_REGISTERED")


def test_only_settings_reads_or_writes_the_environment() -> None:
    pattern = re.compile(r"\bos\.environ\b|\bgetenv\(|\bputenv\(|\benviron\[")
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "integration_assets").rglob("*.py")
        if path != ROOT / "integration_assets" / "settings.py" and pattern.search(path.read_text())
    )
    assert readers == [], f"read variables through integration_assets.settings, not os.environ: {readers}"
