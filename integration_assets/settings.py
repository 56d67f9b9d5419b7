"""Every environment variable the project reads, read in one place.

Plain Python (no Dagster import) so connectors, the mapping engine and the CLI share it. Dagster resources
read the same names through ``dg.EnvVar``. ``.env.example`` lists them all; a test keeps the two in sync.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# name -> (default, description). The single registry of env vars; .env.example is checked against it.
ENV_VARS: dict[str, tuple[str | None, str]] = {
    "INTEGRATION_DATA_DIR": (".data", "Root for the embedded default: SQLite warehouse, inbox, archive."),
    "INTEGRATION_WAREHOUSE_URL": (
        None,
        "SQLAlchemy URL of the warehouse; default sqlite:///<data dir>/warehouse.db.",
    ),
    "INTEGRATION_INBOX_DIR": (
        None,
        "Inbox laid out as <inbox>/<system>/<entity>/<file>; default <data dir>/inbox.",
    ),
    "INTEGRATION_ARCHIVE_DIR": (None, "Where processed files go; default <data dir>/archive."),
    "INTEGRATION_REJECTED_DIR": (
        None,
        "Where unreadable files go, with a .reason.json; default <data dir>/rejected.",
    ),
    "INTEGRATION_MAX_FILE_BYTES": ("2147483648", "Files larger than this are rejected unread."),
    "INTEGRATION_MAX_FIELD_BYTES": ("1048576", "A single value larger than this quarantines its row."),
    "INTEGRATION_MAX_COLUMNS": (
        "2000",
        "Files with more columns (CSV header, Parquet schema, JSON fields) are rejected unread.",
    ),
    "INTEGRATION_CHUNK_ROWS": (
        "100000",
        "Rows mapped and validated at a time; bounds memory (two chunks are in flight).",
    ),
    "INTEGRATION_FALLBACK_ENCODING": ("cp1252", "Encoding tried when a file is not valid UTF-8."),
    "INTEGRATION_INBOX_SETTLE_SECONDS": (
        "2",
        "A file must be unchanged this long before the sensor picks it up.",
    ),
    "INTEGRATION_INBOX_TEMP_MAX_AGE_SECONDS": (
        "86400",
        "Temporary names in the inbox (*.part, *.tmp, editor swap/lock files) are left alone this long, then rejected.",
    ),
    "INTEGRATION_INBOX_RETRY_SECONDS": (
        "60",
        "Wait before the sensor retries a file whose load failed; doubles with each failed attempt.",
    ),
    "INTEGRATION_INBOX_RETRY_MAX_SECONDS": ("3600", "Longest wait between two retries of a failing file."),
    "INTEGRATION_INBOX_ALERT_ATTEMPTS": (
        "4",
        "A file whose load failed this many times raises an alert (needs no warehouse).",
    ),
    "INTEGRATION_INBOX_ALERT_SECONDS": (
        "3600",
        "A file failing for longer than this raises the alert too, whatever its attempts.",
    ),
    "INTEGRATION_LOAD_LEASE_SECONDS": (
        "600",
        "A running load seen from another host is presumed dead after this long without a heartbeat.",
    ),
    "INTEGRATION_RUN_TRANSIENT_RETRIES": (
        "4",
        "Retries of an ingest step after a transient error (warehouse unreachable), 5 s doubling; then the run fails and the inbox sensor retries the file.",
    ),
    "INTEGRATION_CONTRACTS_DIR": (
        None,
        "Folder of mapping contracts (<system>/<name>.vN.yaml); default: the ones shipped in the package.",
    ),
    "INTEGRATION_QUEUE_URL": ("sql", "'sql' (embedded queue table in the warehouse) or an amqp:// URL."),
    "INTEGRATION_WEBHOOK_MAX_BYTES": (
        "1048576",
        "Webhook bodies above this are refused (413) before being read in full.",
    ),
    "INTEGRATION_WEBHOOK_PUBLISHERS": (
        "2",
        "Receiver publisher threads (one queue connection each); more overlap the broker's confirms.",
    ),
    "INTEGRATION_WEBHOOK_BODY_TIMEOUT_SECONDS": (
        "10",
        "A webhook body must arrive within this many seconds of its headers, else 408 and the connection is closed.",
    ),
    "INTEGRATION_WEBHOOK_PUBLIC_URL": (
        None,
        "scheme://host[:port] providers post to, if not what the receiver sees (HubSpot v3 signs the URL).",
    ),
    "PROMETHEUS_MULTIPROC_DIR": (
        None,
        "Set when the receiver runs several workers: prometheus_client keeps metric values there; /metrics merges them.",
    ),
    "STRIPE_WEBHOOK_SECRET": (
        None,
        "Stripe endpoint signing secret(s) whsec_…, comma-separated while rotating (a secret).",
    ),
    "HUBSPOT_CLIENT_SECRET": (None, "HubSpot app client secret; signs X-HubSpot-Signature-v3 (a secret)."),
    "EASYPOST_WEBHOOK_SECRET": (None, "EasyPost webhook secret; signs X-Hmac-Signature (a secret)."),
    "INTEGRATION_ALERT_LOG": (None, "JSON-lines alert log, always written; default <data dir>/alerts.jsonl."),
    "INTEGRATION_ALERT_WEBHOOK_URL": (
        None,
        "Generic alert webhook: each notice is POSTed as JSON. Off when empty.",
    ),
    "INTEGRATION_ALERT_SLACK_WEBHOOK_URL": (None, "Slack incoming-webhook URL (a secret). Off when empty."),
    "INTEGRATION_ALERT_SMTP_HOST": (None, "SMTP server for alert e-mails. E-mail is off when empty."),
    "INTEGRATION_ALERT_SMTP_PORT": ("587", "SMTP port (587 = submission with STARTTLS)."),
    "INTEGRATION_ALERT_SMTP_USERNAME": (
        None,
        "SMTP login; never sent without STARTTLS except to a loopback relay.",
    ),
    "INTEGRATION_ALERT_SMTP_PASSWORD": (None, "SMTP password (a secret)."),
    "INTEGRATION_ALERT_SMTP_FROM": (None, "Sender address of alert e-mails."),
    "INTEGRATION_ALERT_SMTP_TO": (None, "Recipients of alert e-mails, comma-separated."),
    "INTEGRATION_ALERT_SMTP_STARTTLS": ("true", "Upgrade the SMTP connection with STARTTLS (true/false)."),
    "INTEGRATION_ALERT_RENOTIFY_SECONDS": (
        "0",
        "Repeat an open incident's alert this often; 0 = once per incident.",
    ),
    "INTEGRATION_POLICIES_FILE": (
        None,
        "Quality/alerting policy (freshness windows, thresholds, severities); default: policies.yaml in the package.",
    ),
    "HUBSPOT_ACCESS_TOKEN": (
        None,
        "HubSpot private-app (or OAuth) access token for the CRM v3 API pull (a secret).",
    ),
    "HUBSPOT_BASE_URL": ("https://api.hubapi.com", "HubSpot API base URL (a local fake in tests)."),
    "ODOO_URL": (
        None,
        "Odoo base URL, e.g. https://mycompany.odoo.com; the pull POSTs JSON-RPC to <url>/jsonrpc.",
    ),
    "ODOO_DB": (None, "Odoo database name."),
    "ODOO_USERNAME": (None, "Odoo login of the integration user."),
    "ODOO_API_KEY": (None, "Odoo API key of that user (replaces the password for external calls; a secret)."),
    "INTEGRATION_CONNECTOR_STATE_DIR": (
        None,
        "Pull cursors (watermark per system/entity); default <data dir>/connectors.",
    ),
    "DAGSTER_HOME": (None, "Dagster instance directory (runs, event logs, schedules)."),
}


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
