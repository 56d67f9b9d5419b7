"""The receiver under several uvicorn workers: the factory installs the project's JSON logs in each."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from integration_assets.observability.logging import JsonFormatter
from integration_assets.webhooks.server import receiver_app

UVICORN = ("uvicorn", "uvicorn.access")


def test_the_worker_factory_hands_uvicorn_logs_to_the_json_handler(isolated_env: Path) -> None:
    # What uvicorn's LOGGING_CONFIG does in each worker before it calls the factory: text handlers on its
    # own loggers, not propagating.
    for name in UVICORN:
        logger = logging.getLogger(name)
        logger.addHandler(logging.StreamHandler(io.StringIO()))
        logger.propagate = False
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        app = receiver_app()
        assert app.state.metrics is not None
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        for name in UVICORN:
            assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
        root.setLevel(level)
        for name in UVICORN:
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
