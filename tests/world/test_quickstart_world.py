"""The quick start's second act: a Cloud Run call into gVisor and a pod-to-pod mTLS call."""

from __future__ import annotations

import pytest

from scenarios import quickstart
from scenarios.world.builder import require_privileges
from scenarios.world.errors import NotPrivilegedError
from scenarios.world.sweep import leftovers

pytestmark = pytest.mark.world


def test_quickstart_world_act() -> None:
    """The ID-token call reaches a gen1 instance as h2c; the mesh call carries both SPIFFE ids."""
    try:
        require_privileges()
    except NotPrivilegedError as exc:
        pytest.fail(f"the world tier cannot run here: {exc}", pytrace=False)
    report = quickstart.run_world()

    cloud_run = report["cloud_run"]
    assert cloud_run["reached"] == "echo-gen1"
    assert "(gen1, kernel 4.4.0)" in cloud_run["instance"]  # gVisor's kernel, not the host's
    assert cloud_run["protocol_at_instance"] == "HTTP/2 cleartext"
    mesh = report["mesh"]
    td = "spiffe://mesh-demo.svc.id.goog/ns/fortio/sa"
    assert mesh == {
        "client_identity": f"{td}/echo-client",
        "server_identity": f"{td}/echo-server",
        "server_app_saw_peer": "127.0.0.6",
    }
    left = leftovers(report["world_prefix"])
    assert all(not found for found in left.values()), left
