"""Structured JSON logs: correlation ids from contextvars, redaction, one record per line."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from integration_assets.observability import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    correlation,
    current_correlation,
)
from integration_assets.observability.logging import CorrelationFilter


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.observability.capture")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_formatter_emits_one_json_object_with_correlation_ids(capture) -> None:
    logger, stream = capture
    with correlation(run_id="run-1", load_id="load-7", source_system="hubspot", entity="contacts"):
        with correlation(event_id="evt_123", idempotency_key="idem-9"):
            logger.info("merged %d rows", 10)
        logger.warning("after the inner block")
    logger.error("outside")
    first, second, third = records(stream)
    assert first["message"] == "merged 10 rows"
    assert (first["level"], first["logger"]) == ("INFO", "tests.observability.capture")
    assert first["timestamp"].endswith("+00:00")
    assert {
        k: first[k] for k in ("run_id", "load_id", "event_id", "idempotency_key", "source_system", "entity")
    } == {
        "run_id": "run-1",
        "load_id": "load-7",
        "event_id": "evt_123",
        "idempotency_key": "idem-9",
        "source_system": "hubspot",
        "entity": "contacts",
    }
    assert "event_id" not in second and second["load_id"] == "load-7"
    assert "run_id" not in third


def test_correlation_rejects_unknown_names_and_ignores_none() -> None:
    with pytest.raises(TypeError, match="runid"):
        with correlation(runid="x"):
            pass
    with correlation(run_id="r", load_id=None) as ids:
        assert ids == {"run_id": "r"} == current_correlation()
    assert current_correlation() == {}


def test_ids_do_not_leak_into_other_threads(capture) -> None:
    logger, stream = capture
    with correlation(run_id="main-run"):
        t = threading.Thread(target=lambda: logger.info("from a worker"))
        t.start()
        t.join()
    [rec] = records(stream)
    assert "run_id" not in rec


def test_extra_fields_are_included_and_redacted(capture) -> None:
    logger, stream = capture
    logger.info(
        "loaded",
        extra={
            "rows": 12,
            "customer_email": "jane@example.com",
            "note": "key sk_live_abcdef123456",
            "message_x": 1,
        },
    )
    [rec] = records(stream)
    assert rec["rows"] == 12 and rec["message_x"] == 1
    assert rec["customer_email"] == "[REDACTED]"
    assert "sk_live_abcdef123456" not in json.dumps(rec)


CANARIES = [
    "jane.doe@example.com",
    "4242424242424242",
    "078-05-1120",
    "sk_live_51CanaryKey",
    "whsec_CanarySecret1",
]


def test_messages_args_and_tracebacks_are_redacted(capture) -> None:
    logger, stream = capture
    with correlation(entity="contacts\r\nFAKE"):
        logger.warning(
            "payment for %s with card %s (ssn %s)", "jane.doe@example.com", "4242424242424242", "078-05-1120"
        )
        try:
            raise ValueError("bad key sk_live_51CanaryKey / whsec_CanarySecret1 for jane.doe@example.com")
        except ValueError:
            logger.exception("webhook failed")
    out = stream.getvalue()
    for canary in CANARIES:
        assert canary not in out
    first, second = records(stream)
    assert first["message"] == "payment for [REDACTED:email] with card [REDACTED:pan] (ssn [REDACTED:ssn])"
    assert first["entity"] == "contacts FAKE"
    [exc] = second["exception"]  # the structured traceback, without local variables
    assert exc["exc_type"] == "ValueError" and "[REDACTED:email]" in exc["exc_value"]
    assert exc["frames"] and all("locals" not in f for f in exc["frames"])


def test_crlf_cannot_forge_a_log_line(capture) -> None:
    logger, stream = capture
    logger.info('user said: ok\r\n{"level": "CRITICAL", "message": "forged"}\u2028more')
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    [rec] = records(stream)
    assert rec["level"] == "INFO" and "\n" not in rec["message"] and "\r" not in rec["message"]


def test_configure_logging_is_idempotent_and_writes_json() -> None:
    root = logging.getLogger()
    before_level, before = root.level, list(root.handlers)
    stream = io.StringIO()
    try:
        configure_logging("DEBUG", stream=io.StringIO())
        handler = configure_logging("INFO", json=True, stream=stream)
        ours = [h for h in root.handlers if h not in before]
        assert ours == [handler] and root.level == logging.INFO
        with correlation(run_id="r-1"):
            logging.getLogger("integration_assets.test").info("hello")
        rec = json.loads(stream.getvalue().splitlines()[-1])
        assert (rec["message"], rec["run_id"]) == ("hello", "r-1")
    finally:
        for h in [h for h in root.handlers if h not in before]:
            root.removeHandler(h)
        root.setLevel(before_level)


def test_text_formatter_is_one_line_with_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "mail %s\nnext", ("jane@example.com",), None)
    with correlation(load_id="l-1"):
        line = TextFormatter().format(record)
    assert "\n" not in line and "[REDACTED:email]" in line and "load_id=l-1" in line


def test_correlation_filter_copies_the_bound_ids_and_leaves_extras() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    record.load_id = "from-extra"
    with correlation(run_id="r-2", load_id="l-2"):
        assert CorrelationFilter().filter(record)
    assert (record.run_id, record.load_id) == ("r-2", "from-extra")
