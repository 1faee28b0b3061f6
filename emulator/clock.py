"""The world's clock: real time plus an offset that tests and the admin API can move."""

from __future__ import annotations

import threading
import time


class OffsetClock:
    """Callable like `time.time`; `advance()` moves it forward (never backward)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the world clock only moves forward")
        with self._lock:
            self._offset += seconds
            return self._offset

    @property
    def offset(self) -> float:
        return self._offset
