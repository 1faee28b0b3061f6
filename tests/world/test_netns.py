"""Namespace plumbing: a participant can be removed and made again at once."""

from __future__ import annotations

import pytest

from scenarios.world import netns
from scenarios.world.builder import require_privileges
from scenarios.world.errors import NotPrivilegedError
from scenarios.world.plan import new_prefix

pytestmark = pytest.mark.world


def test_remove_frees_the_veth_name_immediately() -> None:
    """The world-side veth is gone when remove() returns (the kernel tears namespaces down late)."""
    try:
        require_privileges()
    except NotPrivilegedError as exc:
        pytest.fail(f"the world tier cannot run here: {exc}", pytrace=False)
    from pyroute2 import IPRoute  # type: ignore[import-untyped]  # noqa: PLC0415 - slow import

    prefix = new_prefix()
    world, node = f"{prefix}-w", f"{prefix}-n"
    netns.create(world)
    try:
        for _ in range(40):  # without the explicit veth delete, about half of these failed
            netns.create(node)
            with IPRoute(netns=world, flags=0) as ipr:
                ipr.link(
                    "add", ifname="vh1", kind="veth", peer={"ifname": "eth0", "net_ns_fd": node}
                )
            netns.remove(node)
    finally:
        netns.remove(node)
        netns.remove(world)
    assert not netns.exists(world)
