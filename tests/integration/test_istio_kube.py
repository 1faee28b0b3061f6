"""istiod following the emulated Kubernetes API: model updates and the published root."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from emulator.istio.model import MeshModel, Service, Workload
from emulator.istio.server import mesh_model
from emulator.kube.cluster import KubeCluster, kube_cluster
from emulator.kube.manifests import install_istio_crds
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


def eventually(check: Callable[[], bool], bound: float = 10.0) -> None:
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {bound}s")
        time.sleep(0.01)


def setup(emu: RunningEmulator) -> tuple[KubeCluster, MeshModel]:
    cluster = emu.world.cluster("mesh-demo", "us-central1-c", "istio")
    return kube_cluster(emu.world, cluster), mesh_model(cluster)


def test_root_cert_configmap_in_every_namespace(fresh_emu: RunningEmulator) -> None:
    """Every namespace, old or new, gets istio-ca-root-cert with the world root as root-cert.pem."""
    kube, _ = setup(fresh_emu)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "late"}})
    root = fresh_emu.ca_file.read_text()

    def published() -> bool:
        namespaces = [n["metadata"]["name"] for n in kube.store.list("namespaces")[0]]
        maps = [kube.store.find("configmaps", ns, "istio-ca-root-cert") for ns in namespaces]
        return "late" in namespaces and all(
            m is not None and m["data"]["root-cert.pem"] == root for m in maps
        )

    eventually(published)


def test_services_pods_and_istio_objects_reach_the_model(fresh_emu: RunningEmulator) -> None:
    """Applying a Service, a Pod and a VirtualService updates the model; deleting removes them."""
    kube, model = setup(fresh_emu)
    install_istio_crds(kube)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}})
    model.put(Workload("registered", "test", "10.9.9.9"))  # put directly, must survive resyncs
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo", "namespace": "test"},
            "spec": {"selector": {"app": "echo"}, "ports": [{"name": "http", "port": 80}]},
        }
    )
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "echo-0", "namespace": "test", "labels": {"app": "echo"}},
            "spec": {"containers": [{"name": "app", "image": "echo"}]},
            "status": {"podIP": "10.8.0.5"},
        }
    )
    kube.apply(
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "echo", "namespace": "test"},
            "spec": {"hosts": ["echo"], "http": [{"route": [{"destination": {"host": "echo"}}]}]},
        }
    )

    def synced() -> bool:
        snap = model.snapshot()
        service = snap.service("echo", "test")
        return (
            service is not None
            and snap.virtual_service(service) is not None
            and [w.address for w in snap.endpoints(service)] == ["10.8.0.5"]
        )

    eventually(synced)
    kube.store.delete("services", "test", "echo")
    eventually(lambda: model.snapshot().service("echo", "test") is None)
    assert model.snapshot().workload("test", "registered") is not None
    assert all(not isinstance(o, Service) or o.name != "echo" for o in model.snapshot().services)
