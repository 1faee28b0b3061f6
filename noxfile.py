"""Sessions for krun. `scripts/test` runs the default ones inside .venv.

Every session runs on the interpreter that invokes nox (the project's .venv,
built by scripts/install), so nox never downloads anything itself.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True


def _pytest(session: nox.Session, *args: str) -> None:
    session.run("pytest", *args, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint rules and formatting."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict on krun/ and emulator/."""
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    """Every tier CI runs: unit and integration (loopback), then the world tier (root)."""
    _pytest(session, "tests/unit", "tests/integration")
    # The world tier gets a process of its own: its emulator runs on a thread inside a
    # network namespace, and threads that gRPC spawns from there stay in that namespace,
    # so a later loopback test in the same process could bind or dial in the wrong one.
    _pytest(session, "tests/world")


@nox.session(default=False)
def unit(session: nox.Session) -> None:
    """Pure cores only: no sockets, no root."""
    _pytest(session, "tests/unit")


@nox.session(default=False)
def integration(session: nox.Session) -> None:
    """The emulator against real clients, on loopback."""
    _pytest(session, "tests/integration")


@nox.session(default=False)
def bench_krun(session: nox.Session) -> None:
    """krun's discovery-plus-identity start-up and its import time, as ratios to the interpreter."""
    session.run("python", "-m", "scenarios.bench_krun", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """World start-up costs (world up, gen1/gen2/pod ready) as ratios to a same-run baseline."""
    session.run("python", "-m", "scenarios.bench", *session.posargs)
