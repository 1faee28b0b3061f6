"""The harness's errors.

* WorldError                 - building or running a world failed
  * WorldSpecError           - a harness world file is invalid; .problems name fields
  * NotPrivilegedError       - not root, or a required tool (runsc, iptables) is missing
  * SandboxError             - an instance or pod did not start or did not become ready
"""

from __future__ import annotations


class WorldError(Exception):
    """Building or running a world failed."""


class WorldSpecError(WorldError):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid world:\n  " + "\n  ".join(problems))


class NotPrivilegedError(WorldError):
    """The machine cannot build worlds: not root, or a tool is missing."""


class SandboxError(WorldError):
    """An instance or pod did not start, or did not become ready."""
