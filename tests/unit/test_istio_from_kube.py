"""Kubernetes and Istio objects turned into the mesh model (the adapter's pure part)."""

from __future__ import annotations

from typing import Any

from emulator.istio.from_kube import NETWORKING, SECURITY, mesh_objects
from emulator.istio.model import (
    AuthorizationPolicy,
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


def meta(name: str, namespace: str = "test", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, **extra}


OBJECTS: dict[str, list[dict[str, Any]]] = {
    "services": [
        {
            "metadata": meta("echo"),
            "spec": {
                "selector": {"app": "echo"},
                "clusterIP": "10.12.0.5",
                "ports": [
                    {"name": "http-web", "port": 80, "targetPort": 8080},
                    {"name": "rpc", "port": 7070, "appProtocol": "grpc"},
                ],
            },
        },
        {"metadata": meta("external"), "spec": {"ports": [{"name": "tcp", "port": 9000}]}},
    ],
    "pods": [
        {
            "metadata": meta(
                "echo-0",
                labels={
                    "app": "echo",
                    "istio-locality": "r1.z1",
                    "security.istio.io/tlsMode": "istio",
                },
            ),
            "spec": {"serviceAccountName": "echo"},
            "status": {"podIP": "10.8.0.5", "conditions": [{"type": "Ready", "status": "True"}]},
        },
        {"metadata": meta("pending", labels={"app": "echo"}), "spec": {}, "status": {}},
    ],
    "endpointslices.discovery.k8s.io": [
        {
            "metadata": meta("external-abc", labels={"kubernetes.io/service-name": "external"}),
            "endpoints": [{"addresses": ["192.0.2.7"], "conditions": {"ready": True}}],
        }
    ],
    f"workloadentries.{NETWORKING}": [
        {
            "metadata": meta("fortio-run"),
            "spec": {"address": "10.9.0.2", "labels": {"app": "echo"}, "serviceAccount": "fortio"},
        }
    ],
    f"virtualservices.{NETWORKING}": [
        {
            "metadata": meta("echo"),
            "spec": {
                "hosts": ["echo"],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "echo", "subset": "v1"}, "weight": 90},
                            {"destination": {"host": "echo", "subset": "v2"}, "weight": 10},
                        ]
                    }
                ],
            },
        }
    ],
    f"destinationrules.{NETWORKING}": [
        {
            "metadata": meta("echo"),
            "spec": {
                "host": "echo",
                "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
            },
        }
    ],
    f"peerauthentications.{SECURITY}": [
        {
            "metadata": meta("default", "istio-system"),
            "spec": {"mtls": {"mode": "STRICT"}},
        }
    ],
    f"authorizationpolicies.{SECURITY}": [
        {
            "metadata": meta("allow"),
            "spec": {
                "selector": {"matchLabels": {"app": "echo"}},
                "rules": [{"from": [{"source": {"principals": ["td/ns/test/sa/client"]}}]}],
            },
        }
    ],
    f"sidecars.{NETWORKING}": [
        {"metadata": meta("default"), "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]}}
    ],
}


def by_name(kind: type) -> dict[str, Any]:
    return {o.name: o for o in mesh_objects(OBJECTS) if isinstance(o, kind)}


def test_services_ports_and_protocols() -> None:
    """Port protocol comes from appProtocol or the name prefix; the ClusterIP is a VIP."""
    echo = by_name(Service)["echo"]
    assert echo.ports == (
        ServicePort(80, Protocol.HTTP, "http-web", 8080),
        ServicePort(7070, Protocol.GRPC, "rpc", None),
    )
    assert echo.addresses == ("10.12.0.5",)


def test_pods_entries_and_slices_become_workloads() -> None:
    """Pods with an IP, WorkloadEntries, and slices of selector-less services are workloads."""
    workloads = by_name(Workload)
    assert set(workloads) == {"echo-0", "fortio-run", "external-abc-0-192.0.2.7"}
    pod = workloads["echo-0"]
    assert (pod.address, pod.service_account, pod.locality, pod.sidecar) == (
        "10.8.0.5",
        "echo",
        "r1/z1",
        True,
    )
    assert pod.egress == ("./*", "istio-system/*")
    assert workloads["fortio-run"].service_account == "fortio"


def test_selectorless_service_selects_its_slices() -> None:
    """A Service without a selector gets the endpoints of its EndpointSlices."""
    model = MeshModel("td")
    model.replace(mesh_objects(OBJECTS))
    snap = model.snapshot()
    external = snap.service("external", "test")
    assert external is not None
    assert [w.address for w in snap.endpoints(external)] == ["192.0.2.7"]


def test_istio_policy_kinds() -> None:
    """VirtualService, DestinationRule, PeerAuthentication and AuthorizationPolicy map field by field."""
    assert by_name(VirtualService)["echo"].http == (
        HttpRoute((Destination("echo", 90, "v1"), Destination("echo", 10, "v2"))),
    )
    rule = by_name(DestinationRule)["echo"]
    assert (rule.tls_mode, dict(rule.subsets)) == (TlsMode.ISTIO_MUTUAL, {"v1": {"version": "v1"}})
    assert by_name(PeerAuthentication)["default"].mode is MtlsMode.STRICT
    policy = by_name(AuthorizationPolicy)["allow"]
    assert (policy.action, policy.principals) == ("ALLOW", ("td/ns/test/sa/client",))
