"""Structured logs: one JSON object per line on stdout (krun is PID 1), fields from `extra`.

`log.info("discovered", extra={"fields": {...}})` puts the fields at the top level;
`phase("discovery", timings)` times a block and logs `{"event": "phase", "phase": ...,
"ms": ...}`. Only `krun.cli` calls `setup`; library code just uses `logging.getLogger`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

LOGGER = logging.getLogger("krun")


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "event", ...fields}`; exceptions as `error`."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def setup(*, json_format: bool = True, debug: bool = False) -> None:
    """Send krun's logs to stdout; called once by the command line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter() if json_format else logging.Formatter("%(levelname)s %(message)s")
    )
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.DEBUG if debug else logging.INFO)
    LOGGER.propagate = False


@contextmanager
def phase(name: str, timings: MutableMapping[str, float] | None = None) -> Iterator[None]:
    """Time a start-up phase; record it in `timings` and log it as a field."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = round((time.perf_counter() - start) * 1000, 2)
        if timings is not None:
            timings[name] = elapsed
        LOGGER.info("phase", extra={"fields": {"phase": name, "ms": elapsed}})
