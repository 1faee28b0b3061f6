"""The HTTP helper's error text, and krun's JSON log lines with phase timings."""

from __future__ import annotations

import json
import logging

import pytest

from krun.http import error_message
from krun.log import LOGGER, JsonFormatter, phase


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error": {"code": 403, "message": "Permission denied.", "status": "PERMISSION_DENIED"}}',
            "Permission denied. (PERMISSION_DENIED)",
        ),
        (b'{"error": "invalid_grant", "error_description": "expired"}', "invalid_grant: expired"),
        (b'{"error": "invalid_target"}', "invalid_target"),
        (b"<html>Forbidden</html>\n", "<html>Forbidden</html>"),
        (b"", "(empty body)"),
        (b'["odd"]', '["odd"]'),
    ],
)
def test_error_message_is_the_human_part(body: bytes, message: str) -> None:
    """Google's, OAuth's and plain-text error bodies each give their message."""
    assert message == error_message(body)


def test_json_lines_carry_fields_and_phase_timings() -> None:
    """A phase is logged as one JSON object with its name and milliseconds, and recorded."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)
    timings: dict[str, float] = {}
    try:
        with phase("discovery", timings):
            pass
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)

    line = json.loads(JsonFormatter().format(records[0]))
    assert {
        "level": "info",
        "logger": "krun",
        "event": "phase",
        "phase": "discovery",
    }.items() <= line.items()
    assert line["ms"] == timings["discovery"] >= 0
