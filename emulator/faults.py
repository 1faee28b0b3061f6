"""Fault injection: make any emulated endpoint slow, failing, resetting or down.

A fault applies to one service (or `*` for all) and optionally to one method
and a path regex. Kinds:

* `latency`: wait `latency_ms` before handling the request normally;
* `status`: answer `status` (a Google JSON error, or the matching gRPC status);
* `reset`: abort the connection with a TCP RST instead of answering;
* `outage`: reset every new connection to the service before any byte is read.

`times` limits a fault to the next N matches; `duration_s` to a time window.
Faults come from the world file (`faults:`) or the admin API at run time.
"""

from __future__ import annotations

import enum
import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


class FaultKind(enum.StrEnum):
    LATENCY = "latency"
    STATUS = "status"
    RESET = "reset"
    OUTAGE = "outage"


@dataclass(slots=True)
class Fault:
    service: str
    kind: FaultKind
    path: re.Pattern[str] | None = None
    method: str | None = None
    latency_ms: int = 0
    status: int = 503
    message: str = "injected fault"
    times: int | None = None
    """Remaining matches before the fault expires; None means unlimited."""
    until: float | None = None
    """Clock time after which the fault expires; None means never."""
    id: int = field(default_factory=lambda: next(_ids))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "service": self.service, "kind": str(self.kind)}
        if self.path is not None:
            out["path"] = self.path.pattern
        if self.method is not None:
            out["method"] = self.method
        if self.kind is FaultKind.LATENCY:
            out["latency_ms"] = self.latency_ms
        if self.kind is FaultKind.STATUS:
            out["status"] = self.status
            out["message"] = self.message
        if self.times is not None:
            out["times"] = self.times
        if self.until is not None:
            out["until"] = self.until
        return out


_FIELDS = {"service", "kind", "path", "method", "latency_ms", "status", "message", "times"}
_FIELDS_IN = _FIELDS | {"duration_s"}


def parse_fault(obj: object, *, where: str, now: float) -> Fault:
    """Build a Fault from JSON/YAML; ValueError names the field (prefixed by `where`)."""
    if not isinstance(obj, dict):
        # ValueError, not TypeError: callers handle every bad spec the same way.
        raise ValueError(f"{where}: must be a mapping, got {type(obj).__name__}")  # noqa: TRY004
    unknown = sorted(set(obj) - _FIELDS_IN)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field (known: {sorted(_FIELDS_IN)})")
    service = obj.get("service")
    if not isinstance(service, str) or not service:
        raise ValueError(f"{where}.service: required, a service name or '*'")
    try:
        kind = FaultKind(str(obj.get("kind")))
    except ValueError:
        raise ValueError(
            f"{where}.kind: must be one of {[k.value for k in FaultKind]}, got {obj.get('kind')!r}"
        ) from None
    fault = Fault(service=service, kind=kind)
    if "path" in obj:
        try:
            fault.path = re.compile(_text(obj, "path", where))
        except re.error as exc:
            raise ValueError(f"{where}.path: not a valid regular expression: {exc}") from None
    if "method" in obj:
        fault.method = _text(obj, "method", where).upper()
    fault.latency_ms = _int(obj, "latency_ms", where, 0, 0, 600_000)
    fault.status = _int(obj, "status", where, 503, 400, 599)
    if kind is FaultKind.LATENCY and "latency_ms" not in obj:
        raise ValueError(f"{where}.latency_ms: required for a latency fault")
    if "message" in obj:
        fault.message = _text(obj, "message", where)
    if "times" in obj:
        fault.times = _int(obj, "times", where, 1, 1, 1_000_000)
    if "duration_s" in obj:
        duration = obj["duration_s"]
        if not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0:
            raise ValueError(f"{where}.duration_s: must be a positive number")
        fault.until = now + float(duration)
    return fault


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string, got {value!r}")  # noqa: TRY004
    return value


def _int(obj: dict[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{where}.{key}: must be an integer in [{low}, {high}], got {value!r}")
    return value


class FaultTable:
    """The active faults, shared by every service; safe to use from any thread."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self, now: float) -> list[Fault]:
        with self._lock:
            self._expire(now)
            return list(self._faults)

    def take(self, service: str, method: str, path: str, now: float) -> list[Fault]:
        """Request-level faults matching this request, consuming one use of each."""
        return self._take(
            lambda f: (
                f.kind is not FaultKind.OUTAGE
                and (f.method is None or f.method == method)
                and (f.path is None or f.path.search(path) is not None)
            ),
            service,
            now,
        )

    def take_outage(self, service: str, now: float) -> Fault | None:
        """An outage fault for a new connection to the service, if any."""
        found = self._take(lambda f: f.kind is FaultKind.OUTAGE, service, now)
        return found[0] if found else None

    def _take(self, predicate: Callable[[Fault], bool], service: str, now: float) -> list[Fault]:
        with self._lock:
            self._expire(now)
            hits = [f for f in self._faults if f.service in ("*", service) and predicate(f)]
            for fault in hits:
                if fault.times is not None:
                    fault.times -= 1
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]
            return hits

    def _expire(self, now: float) -> None:
        self._faults = [f for f in self._faults if f.until is None or f.until > now]
