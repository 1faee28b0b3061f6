"""Pods with real Envoy sidecars fed by the emulated istiod, and the cluster services in a world."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scenarios.world import netns
from scenarios.world.builder import RunInstance, RunningWorld, world_up
from scenarios.world.errors import SandboxError
from scenarios.world.mesh import ADMIN_PORT, envoy_get
from scenarios.world.plan import new_prefix
from scenarios.world.spec import WorldSpec, build_spec
from scenarios.world.sweep import leftovers

pytestmark = pytest.mark.world

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "mesh-demo/us-central1-c/istio"
TD = "spiffe://mesh-demo.svc.id.goog"
CLIENT_ID = f"{TD}/ns/fortio/sa/echo-client"
SERVER_ID = f"{TD}/ns/fortio/sa/echo-server"


@pytest.fixture(scope="module")
def gen2(world: RunningWorld) -> Iterator[RunInstance]:
    instance = world.start_instance("echo-gen2")
    yield instance
    world.stop_instance(instance.name)


def _curl_json(world: RunningWorld, participant: str, url: str) -> dict[str, Any]:
    done = world.run(participant, ["curl", "-sS", "-m", "20", "--fail-with-body", url])
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _xfcc(report: dict[str, Any]) -> dict[str, str]:
    headers = dict(report["headers"])
    fields = [part.split("=", 1) for part in headers["x-forwarded-client-cert"].split(";")]
    return dict(fields)


def test_service_call_travels_envoy_mtls_envoy(world: RunningWorld) -> None:
    """The client pod's plain HTTP to the Service reaches the server app from 127.0.0.6, over mTLS."""
    server = world.plan.pods["echo-server"].address
    service = world.kube("istio").store.get("services", "fortio", "echo")
    vip = service["spec"]["clusterIP"]

    for url in ("http://echo.fortio.svc.cluster.local:8080/who", f"http://{vip}:8080/who"):
        report = _curl_json(world, "echo-client", url)
        xfcc = _xfcc(report)

        assert report["client"][0] == "127.0.0.6"  # the server sidecar's inbound hop
        assert report["server"] == [server, 8080]  # original destination kept
        assert xfcc["URI"] == CLIENT_ID  # the client's certificate, verified by the server's Envoy
        assert xfcc["By"] == SERVER_ID


def test_pods_are_registered_and_connected_with_their_identity(world: RunningWorld) -> None:
    """Each pod is Running in the API server with its IP and account; istiod serves its identity."""
    store = world.kube("istio").store
    pod = store.get("pods", "fortio", "echo-server")
    slice_ = store.get("endpointslices.discovery.k8s.io", "fortio", "echo-world")
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}

    assert pod["status"]["phase"] == "Running"
    assert ready["Ready"] == "True"
    assert pod["status"]["podIP"] == world.plan.pods["echo-server"].address
    assert pod["spec"]["serviceAccountName"] == "echo-server"
    assert pod["metadata"]["labels"]["app"] == "echo"
    assert [e["addresses"] for e in slice_["endpoints"]] == [[pod["status"]["podIP"]]]
    assert slice_["endpoints"][0]["conditions"]["ready"] is True
    istiod = world.istiods[CLUSTER]
    identities = {c["proxy"]: c["identity"] for c in world.call(istiod.syncz)}
    assert identities == {"echo-client.fortio": CLIENT_ID, "echo-server.fortio": SERVER_ID}
    assert world.synced()


def test_sidecar_runs_as_1337_with_admin_on_loopback(world: RunningWorld) -> None:
    """Envoy runs as uid 1337 (exempt from capture) and its admin answers only on 127.0.0.1."""
    pod = world.pods["echo-client"]
    envoy = pod.sidecars[0]
    assert envoy.pid is not None
    status = Path(f"/proc/{envoy.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["1337"] * 4
    code, body = envoy_get(pod.netns, "/listeners")
    assert code == 200
    assert "virtualOutbound::0.0.0.0:15001" in body
    assert "virtualInbound::0.0.0.0:15006" in body
    # Root's own traffic inside the pod is not captured: it reaches the app on the pod
    # address (bound to every address), and nothing there for the admin port.
    for port, reachable in ((8080, True), (ADMIN_PORT, False)):
        probe = netns.socket_in(pod.netns)
        probe.settimeout(5)
        try:
            assert probe.connect_ex((pod.address, port)) == (0 if reachable else errno.ECONNREFUSED)
        finally:
            probe.close()


def test_metadata_from_a_pod_is_the_gke_flavour(world: RunningWorld) -> None:
    """Inside a pod (through its sidecar's passthrough) the metadata server is GKE's."""
    done = world.run(
        "echo-client",
        [
            "curl",
            "-s",
            "-i",
            "-m",
            "10",
            "http://metadata.google.internal/computeMetadata/v1/instance/zone",
            "-H",
            "Metadata-Flavor: Google",
        ],
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    assert "server: gke metadata server" in head.lower()
    assert body == "projects/123456789012/zones/us-central1-c"


def test_gen2_reaches_the_pod_network_through_the_connector(
    world: RunningWorld, gen2: RunInstance
) -> None:
    """A connector instance calls a pod by IP; the server's sidecar takes it in as plain text."""
    server = world.plan.pods["echo-server"].address
    report = _curl_json(world, gen2.name, f"http://{server}:8080/from-run")
    headers = dict(report["headers"])
    assert report["client"][0] == "127.0.0.6"
    assert "x-forwarded-client-cert" not in headers  # no mTLS from outside the mesh


def test_gke_api_leads_to_the_cluster_api_server_and_istiod(
    world: RunningWorld, gen2: RunInstance
) -> None:
    """From a gen2 instance: metadata token -> GKE API -> endpoint (GKE's CA) -> the API server."""
    done = world.run(
        gen2.name,
        [
            sys.executable,
            "-m",
            "scenarios.probes.gke_path",
            "istio",
            "--istiod",
            "istiod.istio-system.svc:15012",
        ],
        env={"PYTHONPATH": str(ROOT)},
    )
    report = json.loads(done.stdout or "{}")
    assert done.returncode == 0, f"{report}\n{done.stderr}"

    assert report["endpoint"] == world.plan.cluster_endpoints[CLUSTER]
    assert report["version"]["gitVersion"].startswith("v1.")
    assert report["user"]["username"] == "echo-gen2@mesh-demo.iam.gserviceaccount.com"
    assert "system:authenticated" in report["user"]["groups"]
    assert report["istiod"]["alpn"] == "h2"
    assert "istiod.istio-system.svc" in report["istiod"]["dns_names"]


def _processes_naming(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_a_pod_that_fails_to_start_leaves_nothing_behind(
    harness_spec: WorldSpec, tmp_path: Path
) -> None:
    """An app that exits before listening fails world_up by name; its Envoy and namespaces go."""
    spec = build_spec(
        {
            "emulator": harness_spec.emulator,
            "clients": [],
            "pods": [
                {
                    "name": "broken",
                    "cluster": "istio",
                    "namespace": "fortio",
                    "ports": [8080],
                    "command": ["false"],
                }
            ],
        },
        base=tmp_path,
    )
    prefix = new_prefix()
    with (
        pytest.raises(SandboxError, match="pod broken"),
        world_up(spec, grace=0.5, logs_dir=tmp_path, prefix=prefix),
    ):
        pass
    left = leftovers(prefix)
    assert not any(left.values()), left
    assert _processes_naming(prefix) == []  # the sidecar's bootstrap path carries the prefix
