"""The emulator's error tree.

* EmulatorError
  x WorldFileError     a world definition is invalid; .problems lists each bad field
  x WorldLookupError   something named in a request or call is not in the world
"""

from __future__ import annotations


class EmulatorError(Exception):
    """Root of every error the emulator raises on purpose."""


class WorldFileError(EmulatorError):
    """A world definition failed validation; every problem names its field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid world {source}:\n{listing}")


class WorldLookupError(EmulatorError, KeyError):
    """A project, service account, cluster or instance the caller named does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"
