"""The registry of every environment variable the project reads: name -> (default, description).

Only the registry: ``settings.py`` reads the environment against it, and ``.env.example`` is generated from
it (a test keeps the two in sync).
"""

from __future__ import annotations

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
    "INTEGRATION_LOG_LEVEL": (
        "WARNING",
        "Lowest level of the JSON log lines the command line writes on stderr; INFO adds every load and drain "
        "with its ids. Dagster's event log and the receiver keep INFO whatever this says.",
    ),
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
    "EASYPOST_API_KEY": (
        None,
        "EasyPost API key (EZTK… test or EZAK… production) for shipments and labels (a secret).",
    ),
    "EASYPOST_BASE_URL": ("https://api.easypost.com", "EasyPost API base URL (a local fake in tests)."),
    "STRIPE_API_KEY": (
        None,
        "Stripe secret API key (sk_test_… or sk_live_…; a restricted rk_… key with read access to events, "
        "PaymentIntents, charges and refunds is enough) for the events pull (a secret).",
    ),
    "STRIPE_BASE_URL": ("https://api.stripe.com", "Stripe API base URL (a local fake in tests)."),
    "INTEGRATION_CONNECTOR_STATE_DIR": (
        None,
        "Pull cursors (watermark per system/entity); default <data dir>/connectors.",
    ),
    "DAGSTER_HOME": (None, "Dagster instance directory (runs, event logs, schedules)."),
}
