"""Real proxyless grpcio clients and xDS servers configured by the emulated istiod.

Each gRPC process has its own bootstrap (TLS and a JWT to istiod, file_watcher
certificates fetched from the Istio CA) and runs `emulator.istio.grpcpeer`: two
xDS-enabled echo servers (127.0.0.1 and 127.0.0.5, same port) and one client that
keeps calling `xds:///echo.test.svc.cluster.local:7070` and prints every answer.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emulator import kube_tokens
from emulator.istio.model import (
    Destination,
    DestinationRule,
    HttpRoute,
    MeshModel,
    MtlsMode,
    PeerAuthentication,
    Protocol,
    Service,
    ServicePort,
    TlsMode,
    VirtualService,
    Workload,
)
from emulator.istio.server import mesh_model
from emulator.istio.testing import Peer, fetch_certificates, grpc_bootstrap, run_peer
from emulator.testing import start

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

KEY = "mesh-demo/istio"
TD = "mesh-demo.svc.id.goog"
TARGET = "xds:///echo.test.svc.cluster.local:7070"
BOUND = 10.0
"""Correctness bound for a model change to reach the client (the measured time is reported)."""


@dataclass
class Proxyless:
    model: MeshModel
    client: Peer
    workloads: dict[str, Workload]

    def settle(self, accept: Callable[[dict[str, Any]], bool], *, calls: int = 5) -> float:
        """Seconds until the first of `calls` answers in a row that satisfy `accept`.

        Fails when that streak is not complete within the bound.
        """
        self.client.drain()
        start_time = time.monotonic()
        streak, first = 0, 0.0
        while streak < calls:
            left = BOUND - (time.monotonic() - start_time)
            if left <= 0:
                pytest.fail(f"answers did not settle within {BOUND}s")
            line = self.client.next(left)
            if not accept(line):
                streak = 0
                continue
            if streak == 0:
                first = line["time"] - (time.time() - (time.monotonic() - start_time))
            streak += 1
        return first


def from_server(*names: str) -> Callable[[dict[str, Any]], bool]:
    return lambda line: line.get("server") in names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxyless]:
    workdir = tmp_path_factory.mktemp("grpc-mesh")
    with start(workdir / "emulator") as emu:
        cluster = emu.world.cluster("mesh-demo", "us-central1-c", "istio")
        model = mesh_model(cluster)
        port = free_port()
        workloads = {
            "echo-1": Workload(
                "echo-1", "test", "127.0.0.1", "echo", {"app": "echo", "v": "1"}, "r/a"
            ),
            "echo-2": Workload(
                "echo-2", "test", "127.0.0.5", "echo", {"app": "echo", "v": "2"}, "r/b"
            ),
        }
        model.put(
            Service(
                "echo", "test", (ServicePort(7070, Protocol.GRPC, "grpc", port),), {"app": "echo"}
            ),
            workloads["echo-1"],
        )
        xds = emu.hostport(f"istiod/{KEY}")

        def bootstrap(name: str, ip: str, sa: str) -> dict[str, Any]:
            token = kube_tokens.mint(cluster, "test", sa, [TD], now=emu.world.clock())
            token_file = workdir / f"{name}.jwt"
            token_file.write_text(token)
            certs = fetch_certificates(xds, emu.ca_file, token, workdir / f"{name}-certs")
            node_id = f"sidecar~{ip}~{name}.test~test.svc.cluster.local"
            return grpc_bootstrap(
                node_id, xds=xds, ca_file=emu.ca_file, token_file=token_file, certs=certs
            )

        with contextlib.ExitStack() as stack:
            for name, ip in (("echo-1", "127.0.0.1"), ("echo-2", "127.0.0.5")):
                server = stack.enter_context(
                    run_peer(
                        ["serve", f"{ip}:{port}", name],
                        bootstrap(name, ip, "echo"),
                        workdir,
                        name=name,
                    )
                )
                server.wait_for(lambda line: line.get("event") == "started", 20)
            client = stack.enter_context(
                run_peer(
                    ["call", TARGET, "--interval", "0.02"],
                    bootstrap("client-1", "127.0.0.1", "client"),
                    workdir,
                    name="client",
                )
            )
            client.wait_for(from_server("echo-1"), 20)
            yield Proxyless(model, client, workloads)


def test_plaintext_call_through_xds(mesh: Proxyless) -> None:
    """The client resolves xds:///echo...:7070 and reaches the xDS server in plaintext."""
    line = mesh.client.wait_for(from_server("echo-1"), BOUND)
    assert line["peer"]["transport_security_type"] == ["insecure"]


def test_mtls_with_certificate_providers(
    mesh: Proxyless, record_property: Callable[[str, object], None]
) -> None:
    """ISTIO_MUTUAL + STRICT switch both sides to mTLS; the server sees the client's SPIFFE id."""
    client_id = f"spiffe://{TD}/ns/test/sa/client"
    mesh.model.put(
        DestinationRule("echo", "test", "echo", TlsMode.ISTIO_MUTUAL),
        PeerAuthentication("default", "istio-system", MtlsMode.STRICT),
    )
    try:
        elapsed = mesh.settle(lambda line: line.get("peer", {}).get("peer_uri") == [client_id])
    finally:
        mesh.model.remove(PeerAuthentication, "istio-system", "default")
        mesh.model.remove(DestinationRule, "test", "echo")
    record_property("grpc_mtls_switch_s", round(elapsed, 3))
    log.info("grpc switch to mTLS applied in %.3fs", elapsed)
    mesh.settle(lambda line: line.get("peer", {}).get("transport_security_type") == ["insecure"])


def test_endpoint_addition_weight_change_and_removal(
    mesh: Proxyless, record_property: Callable[[str, object], None]
) -> None:
    """A new endpoint, a VirtualService weight shift and a removal each reach the client in time."""
    mesh.model.put(mesh.workloads["echo-2"])
    added = mesh.settle(from_server("echo-2"), calls=1)
    subsets = {"v1": {"v": "1"}, "v2": {"v": "2"}}
    mesh.model.put(
        DestinationRule("echo", "test", "echo", subsets=subsets),
        VirtualService(
            "echo",
            "test",
            ("echo",),
            (HttpRoute((Destination("echo", 100, "v1"), Destination("echo", 0, "v2"))),),
        ),
    )
    mesh.settle(from_server("echo-1"), calls=20)
    mesh.model.put(
        VirtualService(
            "echo",
            "test",
            ("echo",),
            (HttpRoute((Destination("echo", 0, "v1"), Destination("echo", 100, "v2"))),),
        )
    )
    shifted = mesh.settle(from_server("echo-2"), calls=20)
    mesh.model.remove(VirtualService, "test", "echo")
    mesh.model.remove(DestinationRule, "test", "echo")
    mesh.model.remove(Workload, "test", "echo-2")
    removed = mesh.settle(from_server("echo-1"), calls=20)
    for name, value in (("added", added), ("weight", shifted), ("removed", removed)):
        record_property(f"grpc_{name}_s", round(value, 3))
    log.info("grpc endpoint added %.3fs, weight %.3fs, removal %.3fs", added, shifted, removed)
