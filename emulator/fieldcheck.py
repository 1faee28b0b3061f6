"""Reading typed fields out of parsed YAML while collecting every problem by field path.

Shared by emulator world files (`worldfile.py`) and the scenario harness's files
(`scenarios/world/spec.py`), so both report `where.field: message` the same way:

    check = FieldChecker()
    top = check.mapping(raw, "world", {"name", "port"})
    port = check.integer(top, "port", "world", low=1, high=65535, default=80)
    if check.problems:
        raise SomeError(source, check.problems)
"""

from __future__ import annotations

import re
from typing import Any


def kind_of(value: Any) -> str:
    """How a problem names what was found instead (`nothing` for a missing value)."""
    return "nothing" if value is None else type(value).__name__


class FieldChecker:
    """Reads typed fields out of parsed YAML, recording problems instead of raising."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(self, obj: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(obj, dict):
            self.fail(where, f"must be a mapping, got {kind_of(obj)}")
            return {}
        for key in sorted(set(obj) - allowed, key=str):
            self.fail(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(allowed))})")
        return obj

    def string(
        self,
        obj: dict[str, Any],
        key: str,
        where: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        default: str = "",
    ) -> str:
        if key not in obj or obj[key] is None:
            if required:
                self.fail(f"{where}.{key}", "required")
            return default
        value = obj[key]
        if not isinstance(value, str) or not value:
            self.fail(f"{where}.{key}", f"must be a non-empty string, got {kind_of(value)}")
            return default
        if pattern is not None and pattern.fullmatch(value) is None:
            self.fail(f"{where}.{key}", f"{value!r} does not match {pattern.pattern}")
        return value

    def integer(
        self, obj: dict[str, Any], key: str, where: str, *, low: int, high: int, default: int | None
    ) -> int | None:
        if key not in obj:
            if default is None:
                self.fail(f"{where}.{key}", "required")
            return default
        value = obj[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(f"{where}.{key}", f"must be an integer in [{low}, {high}], got {value!r}")
            return default
        return value

    def str_map(self, obj: dict[str, Any], key: str, where: str) -> dict[str, str]:
        value = obj.get(key) or {}
        if not isinstance(value, dict):
            self.fail(f"{where}.{key}", f"must be a mapping of strings, got {kind_of(value)}")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or isinstance(v, dict | list) or v is None:
                self.fail(f"{where}.{key}.{k}", "keys and values must be strings")
                continue
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def items(self, obj: dict[str, Any], key: str, where: str) -> list[tuple[str, Any]]:
        """A list field's items, each with its own path (`where.key[i]`)."""
        value = obj.get(key) or []
        if not isinstance(value, list):
            self.fail(f"{where}.{key}", f"must be a list, got {kind_of(value)}")
            return []
        return [(f"{where}.{key}[{i}]", item) for i, item in enumerate(value)]
