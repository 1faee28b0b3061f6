"""Fixtures for the world tier: root, network namespaces, gVisor.

These tests never skip. On a machine that is not root or lacks runsc/iptables,
every test fails with the reason (CI runs as root with scripts/apt-packages.txt).

* `harness_spec`: the example harness file, scenarios/worlds/basic.yaml;
* `world`: that world, up for the whole session (SIGTERM grace 1 s);
* `world_up_factory`: `world_up` for a test's own world, torn down after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import pytest

from scenarios.world.builder import RunningWorld, require_privileges, world_up
from scenarios.world.errors import NotPrivilegedError
from scenarios.world.spec import WorldSpec, load_spec

BASIC = Path(__file__).resolve().parents[2] / "scenarios" / "worlds" / "basic.yaml"


@pytest.fixture(scope="session")
def harness_spec() -> WorldSpec:
    try:
        require_privileges()
    except NotPrivilegedError as exc:
        pytest.fail(f"the world tier cannot run here: {exc}", pytrace=False)
    return load_spec(BASIC)


@pytest.fixture(scope="session")
def world(
    harness_spec: WorldSpec, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningWorld]:
    """The basic world, shared by the session; tests must leave it as they found it."""
    with world_up(harness_spec, grace=1, logs_dir=tmp_path_factory.mktemp("world-logs")) as up:
        yield up


WorldFactory = Callable[..., RunningWorld]


@pytest.fixture
def world_up_factory(tmp_path: Path) -> Iterator[WorldFactory]:
    """Bring up a world of the test's own; every one is torn down when the test ends."""
    stack = ExitStack()

    def make(spec: WorldSpec, **kwargs: Any) -> RunningWorld:
        kwargs.setdefault("logs_dir", tmp_path / "logs")
        kwargs.setdefault("grace", 1)
        manager: AbstractContextManager[RunningWorld] = world_up(spec, **kwargs)
        return stack.enter_context(manager)

    with stack:
        yield make
