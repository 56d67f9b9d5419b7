"""Every environment variable the project reads, read in one place.

Plain Python (no Dagster import) so connectors, the mapping engine and the CLI share it. Dagster resources
read the same names through ``dg.EnvVar``. ``.env.example`` lists them all; a test keeps the two in sync.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from integration_assets.env_vars import ENV_VARS

__all__ = ["ENV_VARS", "Settings", "env", "get_settings", "is_set"]


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return ENV_VARS[name][0]
    return value


def _snapshot() -> dict[str, str | None]:
    """Every registered variable as set now (unset or empty: its default)."""
    return {name: _env(name) for name in ENV_VARS}


@dataclass(frozen=True)
class Settings:
    """The settings of one moment. The fields are parsed eagerly (every command needs them); the
    properties parse their variable when read, so a bad value fails where it is used, as before."""

    data_dir: Path
    warehouse_url: str
    inbox_dir: Path
    archive_dir: Path
    rejected_dir: Path
    max_file_bytes: int
    max_field_bytes: int
    chunk_rows: int
    fallback_encoding: str
    inbox_settle_seconds: float
    queue_url: str
    contracts_dir: Path | None = None
    max_columns: int = 2000
    extra: dict[str, str] = field(default_factory=dict)
    # The registered variables as read by from_env (secrets included, hence out of repr).
    raw: Mapping[str, str | None] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls) -> Settings:
        raw = _snapshot()
        data_dir = Path(raw["INTEGRATION_DATA_DIR"] or ".data").resolve()
        wh = raw["INTEGRATION_WAREHOUSE_URL"] or f"sqlite:///{data_dir / 'warehouse.db'}"
        return cls(
            data_dir=data_dir,
            warehouse_url=wh,
            inbox_dir=Path(raw["INTEGRATION_INBOX_DIR"] or data_dir / "inbox").resolve(),
            archive_dir=Path(raw["INTEGRATION_ARCHIVE_DIR"] or data_dir / "archive").resolve(),
            rejected_dir=Path(raw["INTEGRATION_REJECTED_DIR"] or data_dir / "rejected").resolve(),
            max_file_bytes=int(raw["INTEGRATION_MAX_FILE_BYTES"] or 0),
            max_field_bytes=int(raw["INTEGRATION_MAX_FIELD_BYTES"] or 0),
            chunk_rows=int(raw["INTEGRATION_CHUNK_ROWS"] or 0),
            fallback_encoding=raw["INTEGRATION_FALLBACK_ENCODING"] or "cp1252",
            inbox_settle_seconds=float(raw["INTEGRATION_INBOX_SETTLE_SECONDS"] or 0),
            queue_url=raw["INTEGRATION_QUEUE_URL"] or "sql",
            contracts_dir=Path(c).resolve() if (c := raw["INTEGRATION_CONTRACTS_DIR"]) else None,
            max_columns=int(raw["INTEGRATION_MAX_COLUMNS"] or 0),
            raw=raw,
        )

    # -- reading the snapshot ---------------------------------------------------------------------------

    def value(self, name: str) -> str | None:
        """A registered variable as read by from_env, or its default (KeyError if unregistered)."""
        default = ENV_VARS[name][0]
        return self.raw.get(name, default) if self.raw else default

    def _float(self, name: str) -> float:
        return float(self.value(name) or 0)

    def _int(self, name: str) -> int:
        return int(self.value(name) or 0)

    def _bool(self, name: str) -> bool:
        value = (self.value(name) or "").strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")

    # -- inbox, loads and runs --------------------------------------------------------------------------

    @property
    def inbox_temp_max_age_seconds(self) -> float:
        return self._float("INTEGRATION_INBOX_TEMP_MAX_AGE_SECONDS")

    @property
    def inbox_retry_seconds(self) -> float:
        return self._float("INTEGRATION_INBOX_RETRY_SECONDS")

    @property
    def inbox_retry_max_seconds(self) -> float:
        return self._float("INTEGRATION_INBOX_RETRY_MAX_SECONDS")

    @property
    def inbox_alert_attempts(self) -> int:
        return self._int("INTEGRATION_INBOX_ALERT_ATTEMPTS")

    @property
    def inbox_alert_seconds(self) -> float:
        return self._float("INTEGRATION_INBOX_ALERT_SECONDS")

    @property
    def load_lease_seconds(self) -> float:
        return self._float("INTEGRATION_LOAD_LEASE_SECONDS")

    @property
    def run_transient_retries(self) -> int:
        return self._int("INTEGRATION_RUN_TRANSIENT_RETRIES")

    @property
    def policies_file(self) -> Path | None:
        """INTEGRATION_POLICIES_FILE, resolved; None means the policies.yaml shipped in the package."""
        value = self.value("INTEGRATION_POLICIES_FILE")
        return Path(value).expanduser().resolve() if value else None

    @property
    def connector_state_dir(self) -> Path:
        """Pull cursors: INTEGRATION_CONNECTOR_STATE_DIR, else <data dir>/connectors."""
        value = self.value("INTEGRATION_CONNECTOR_STATE_DIR")
        return Path(value).resolve() if value else self.data_dir / "connectors"

    @property
    def log_level(self) -> str:
        """INTEGRATION_LOG_LEVEL, checked: DEBUG, INFO, WARNING or ERROR."""
        value = (self.value("INTEGRATION_LOG_LEVEL") or "WARNING").upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"INTEGRATION_LOG_LEVEL={value!r}: expected DEBUG, INFO, WARNING or ERROR")
        return value

    @property
    def dagster_home(self) -> Path:
        """The Dagster instance directory: DAGSTER_HOME, else <data dir>/dagster (``sync``'s default)."""
        value = self.value("DAGSTER_HOME")
        return Path(value) if value else self.data_dir / "dagster"

    # -- webhook receiver -------------------------------------------------------------------------------

    @property
    def webhook_max_bytes(self) -> int:
        return self._int("INTEGRATION_WEBHOOK_MAX_BYTES")

    @property
    def webhook_publishers(self) -> int:
        return self._int("INTEGRATION_WEBHOOK_PUBLISHERS")

    @property
    def webhook_body_timeout_seconds(self) -> float:
        return self._float("INTEGRATION_WEBHOOK_BODY_TIMEOUT_SECONDS")

    @property
    def webhook_public_url(self) -> str | None:
        return (self.value("INTEGRATION_WEBHOOK_PUBLIC_URL") or "").rstrip("/") or None

    @property
    def stripe_webhook_secret(self) -> str | None:
        """The raw value: one or more whsec_ secrets, comma-separated."""
        return self.value("STRIPE_WEBHOOK_SECRET")

    @property
    def hubspot_client_secret(self) -> str | None:
        return self.value("HUBSPOT_CLIENT_SECRET")

    @property
    def easypost_webhook_secret(self) -> str | None:
        return self.value("EASYPOST_WEBHOOK_SECRET")

    # -- alerts -----------------------------------------------------------------------------------------

    @property
    def alert_log(self) -> Path:
        """The JSON-lines alert log: INTEGRATION_ALERT_LOG, else <data dir>/alerts.jsonl."""
        value = self.value("INTEGRATION_ALERT_LOG")
        return Path(value) if value else self.data_dir / "alerts.jsonl"

    @property
    def alert_webhook_url(self) -> str | None:
        return self.value("INTEGRATION_ALERT_WEBHOOK_URL")

    @property
    def alert_slack_webhook_url(self) -> str | None:
        return self.value("INTEGRATION_ALERT_SLACK_WEBHOOK_URL")

    @property
    def alert_smtp_host(self) -> str | None:
        return self.value("INTEGRATION_ALERT_SMTP_HOST")

    @property
    def alert_smtp_port(self) -> int:
        return int(self.value("INTEGRATION_ALERT_SMTP_PORT") or 587)

    @property
    def alert_smtp_username(self) -> str | None:
        return self.value("INTEGRATION_ALERT_SMTP_USERNAME")

    @property
    def alert_smtp_password(self) -> str | None:
        return self.value("INTEGRATION_ALERT_SMTP_PASSWORD")

    @property
    def alert_smtp_from(self) -> str | None:
        return self.value("INTEGRATION_ALERT_SMTP_FROM")

    @property
    def alert_smtp_to(self) -> tuple[str, ...]:
        """Recipients, split on commas (or semicolons)."""
        to = self.value("INTEGRATION_ALERT_SMTP_TO") or ""
        return tuple(a.strip() for a in to.replace(";", ",").split(",") if a.strip())

    @property
    def alert_smtp_starttls(self) -> bool:
        return self._bool("INTEGRATION_ALERT_SMTP_STARTTLS")

    @property
    def alert_renotify_seconds(self) -> float:
        return self._float("INTEGRATION_ALERT_RENOTIFY_SECONDS")

    # -- API pulls --------------------------------------------------------------------------------------

    @property
    def hubspot_access_token(self) -> str | None:
        return self.value("HUBSPOT_ACCESS_TOKEN")

    @property
    def hubspot_base_url(self) -> str:
        return self.value("HUBSPOT_BASE_URL") or "https://api.hubapi.com"

    @property
    def odoo_url(self) -> str | None:
        return self.value("ODOO_URL")

    @property
    def odoo_db(self) -> str | None:
        return self.value("ODOO_DB")

    @property
    def odoo_username(self) -> str | None:
        return self.value("ODOO_USERNAME")

    @property
    def odoo_api_key(self) -> str | None:
        return self.value("ODOO_API_KEY")

    @property
    def easypost_api_key(self) -> str | None:
        return self.value("EASYPOST_API_KEY")

    @property
    def easypost_base_url(self) -> str:
        return (self.value("EASYPOST_BASE_URL") or "https://api.easypost.com").rstrip("/")

    @property
    def stripe_api_key(self) -> str | None:
        return self.value("STRIPE_API_KEY")

    @property
    def stripe_base_url(self) -> str:
        return (self.value("STRIPE_BASE_URL") or "https://api.stripe.com").rstrip("/")


def env(name: str) -> str | None:
    """The value of a registered variable, or its default when unset or empty (KeyError if unregistered)."""
    return _env(name)


def is_set(name: str) -> bool:
    """Whether a registered variable is set to a non-empty value (KeyError if unregistered)."""
    if name not in ENV_VARS:
        raise KeyError(name)
    return bool(os.environ.get(name))


def get_settings() -> Settings:
    """Settings from the current environment (re-read on every call so tests can change env vars)."""
    return Settings.from_env()


def render_env_example() -> str:
    """The text of .env.example: every variable with its description and default (a test keeps it current)."""
    lines = [
        "# Every environment variable integration_assets reads, with its default.",
        "# Generated from integration_assets/settings.py: python -m integration_assets.settings > .env.example",
        "# Unset or empty means the default: the embedded SQLite warehouse and SQL-table queue under INTEGRATION_DATA_DIR.",
        "",
    ]
    for name, (default, description) in ENV_VARS.items():
        lines.append(f"# {description}")
        lines.append(f"{name}={default or ''}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_env_example(), end="")
