"""Layering: the queue and the webhook receiver are plain Python below the Dagster layer (docs/ARCHITECTURE.md,
"The layers")."""

from __future__ import annotations

import subprocess
import sys


def test_queue_and_webhooks_do_not_import_dagster() -> None:
    code = (
        "import sys, integration_assets.queue, integration_assets.queue.rabbitmq, integration_assets.queue.sql, "
        "integration_assets.webhooks, integration_assets.cli.webhooks; "
        "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
