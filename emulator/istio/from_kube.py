"""Fill a mesh model from the emulated Kubernetes API, and publish the root as istiod does.

`mesh_objects` is pure: Kubernetes and Istio objects (as the store holds them) in,
model objects out. `KubeSync` is its shell: it watches the cluster's store, and on
any change of a kind it reads (debounced) it rebuilds the objects it owns and
applies the difference to the model in one change. Objects it did not create (mesh
workloads registered directly, tests) are left alone unless the cluster has an
object of the same kind, namespace and name, which then wins.

It also does what istiod's namespace controller does: every namespace gets the
`istio-ca-root-cert` ConfigMap with `root-cert.pem`, kept equal to the CA root.

Read from the store:

* `services` (selector, ports with `appProtocol`/name-prefix protocol, ClusterIP);
* `pods` (IP, labels, service account, `istio-locality` label, Ready condition;
  `security.istio.io/tlsMode: istio` or a `sidecar.istio.io/status` annotation
  marks a mesh workload);
* `endpointslices` for Services without a selector (`kubernetes.io/service-name`);
* `workloadentries`, `serviceentries` (hosts[0], ports, addresses, workloadSelector),
  `virtualservices` (prefix matches, weighted routes), `destinationrules` (TLS mode,
  subsets), `peerauthentications`, `authorizationpolicies` (source principals),
  `sidecars` (egress hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from emulator.istio.model import (
    AuthorizationPolicy,
    Destination,
    DestinationRule,
    HttpRoute,
    MeshModel,
    MeshObject,
    MtlsMode,
    PeerAuthentication,
    Protocol,
    Service,
    ServicePort,
    TlsMode,
    VirtualService,
    Workload,
)
from emulator.kube.status import StatusError

if TYPE_CHECKING:
    from emulator.kube.cluster import KubeCluster
    from emulator.kube.store import Event, Subscription

log = logging.getLogger("emulator.istio")

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
RESOURCES = (
    "namespaces",
    "services",
    "pods",
    "endpointslices.discovery.k8s.io",
    f"workloadentries.{NETWORKING}",
    f"serviceentries.{NETWORKING}",
    f"virtualservices.{NETWORKING}",
    f"destinationrules.{NETWORKING}",
    f"sidecars.{NETWORKING}",
    f"peerauthentications.{SECURITY}",
    f"authorizationpolicies.{SECURITY}",
)
ROOT_CONFIGMAP = "istio-ca-root-cert"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Objects = Mapping[str, list[dict[str, Any]]]
_E = TypeVar("_E", bound=enum.Enum)


def _meta(obj: Mapping[str, Any]) -> tuple[str, str, dict[str, str]]:
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    return (
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
        {str(k): str(v) for k, v in labels.items()},
    )


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _service(obj: Mapping[str, Any]) -> Service | None:
    namespace, name, _ = _meta(obj)
    spec = _spec(obj)
    ports = []
    for port in spec.get("ports") or []:
        number = _int(port.get("port"))
        if number is None:
            continue
        port_name = str(port.get("name") or "")
        protocol = Protocol.from_port(port_name, port.get("appProtocol"))
        target = _int(port.get("targetPort"))  # a named targetPort falls back to the port
        ports.append(ServicePort(number, protocol, port_name, target))
    selector = spec.get("selector")
    vip = spec.get("clusterIP")
    addresses = (str(vip),) if vip and vip != "None" else ()
    return Service(
        name,
        namespace,
        tuple(ports),
        dict(selector) if selector else {SERVICE_NAME_LABEL: name},
        addresses=addresses,
    )


def _pod(obj: Mapping[str, Any]) -> Workload | None:
    namespace, name, labels = _meta(obj)
    status = obj.get("status") or {}
    ip = status.get("podIP")
    if not ip:
        return None
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return Workload(
        name,
        namespace,
        str(ip),
        str(_spec(obj).get("serviceAccountName") or "default"),
        labels,
        locality=labels.get("istio-locality", "").replace(".", "/"),
        sidecar=labels.get("security.istio.io/tlsMode") == "istio"
        or "sidecar.istio.io/status" in annotations,
        healthy=conditions.get("Ready", "True") == "True",
    )


def _slice_workloads(obj: Mapping[str, Any]) -> list[Workload]:
    namespace, name, labels = _meta(obj)
    service = labels.get(SERVICE_NAME_LABEL)
    if not service:
        return []
    found = []
    for index, endpoint in enumerate(obj.get("endpoints") or []):
        ready = (endpoint.get("conditions") or {}).get("ready", True)
        for address in endpoint.get("addresses") or []:
            found.append(
                Workload(
                    f"{name}-{index}-{address}",
                    namespace,
                    str(address),
                    labels={SERVICE_NAME_LABEL: service},
                    sidecar=False,
                    healthy=bool(ready),
                )
            )
    return found


def _workload_entry(obj: Mapping[str, Any]) -> Workload | None:
    namespace, name, meta_labels = _meta(obj)
    spec = _spec(obj)
    if not spec.get("address"):
        return None
    return Workload(
        name,
        namespace,
        str(spec["address"]),
        str(spec.get("serviceAccount") or "default"),
        {**meta_labels, **(spec.get("labels") or {})},
        locality=str(spec.get("locality") or ""),
        weight=_int(spec.get("weight")) or 1,
    )


def _service_entry(obj: Mapping[str, Any]) -> Service | None:
    namespace, name, _ = _meta(obj)
    spec = _spec(obj)
    hosts = spec.get("hosts") or []
    if not hosts:
        return None
    ports = tuple(
        ServicePort(
            number,
            Protocol.from_port(str(p.get("name") or ""), p.get("protocol")),
            str(p.get("name") or ""),
            _int(p.get("targetPort")),
        )
        for p in spec.get("ports") or []
        if (number := _int(p.get("number"))) is not None
    )
    selector = (spec.get("workloadSelector") or {}).get("labels")
    return Service(
        name,
        namespace,
        ports,
        dict(selector) if selector else None,
        hostname=str(hosts[0]),
        addresses=tuple(str(a) for a in spec.get("addresses") or []),
    )


def _virtual_service(obj: Mapping[str, Any]) -> VirtualService:
    namespace, name, _ = _meta(obj)
    spec = _spec(obj)
    routes = []
    for http in spec.get("http") or []:
        prefix = "/"
        for match in http.get("match") or []:
            prefix = str((match.get("uri") or {}).get("prefix") or prefix)
            break
        destinations = []
        for route in http.get("route") or []:
            dest = route.get("destination") or {}
            if not dest.get("host"):
                continue
            destinations.append(
                Destination(
                    str(dest["host"]),
                    _int(route.get("weight")) or (100 if len(http.get("route")) == 1 else 0),
                    str(dest.get("subset") or ""),
                    _int((dest.get("port") or {}).get("number")),
                )
            )
        if destinations:
            routes.append(HttpRoute(tuple(destinations), prefix))
    return VirtualService(name, namespace, tuple(map(str, spec.get("hosts") or [])), tuple(routes))


def _destination_rule(obj: Mapping[str, Any]) -> DestinationRule | None:
    namespace, name, _ = _meta(obj)
    spec = _spec(obj)
    if not spec.get("host"):
        return None
    mode = ((spec.get("trafficPolicy") or {}).get("tls") or {}).get("mode")
    subsets = {
        str(s["name"]): {str(k): str(v) for k, v in (s.get("labels") or {}).items()}
        for s in spec.get("subsets") or []
        if s.get("name")
    }
    return DestinationRule(name, namespace, str(spec["host"]), _enum(TlsMode, mode), subsets)


def _enum(kind: type[_E], value: Any) -> _E | None:
    try:
        return kind(value)
    except ValueError:
        return None


def _mode(value: Any) -> MtlsMode | None:
    return _enum(MtlsMode, value)


def _peer_authentication(obj: Mapping[str, Any]) -> PeerAuthentication:
    namespace, name, _ = _meta(obj)
    spec = _spec(obj)
    selector = (spec.get("selector") or {}).get("matchLabels")
    ports = {
        port: mode
        for key, value in (spec.get("portLevelMtls") or {}).items()
        if (port := _int(key)) is not None and (mode := _mode((value or {}).get("mode")))
    }
    return PeerAuthentication(
        name,
        namespace,
        _mode((spec.get("mtls") or {}).get("mode")),
        dict(selector) if selector else None,
        ports,
    )


def _authorization_policy(obj: Mapping[str, Any]) -> AuthorizationPolicy:
    namespace, name, _ = _meta(obj)
    spec = _spec(obj)
    selector = (spec.get("selector") or {}).get("matchLabels")
    principals: list[str] = []
    for rule in spec.get("rules") or []:
        sources = rule.get("from") or []
        if not sources:
            principals.append("*")  # a rule without `from` matches any source
        for source in sources:
            principals += [str(p) for p in (source.get("source") or {}).get("principals") or []]
    return AuthorizationPolicy(
        name,
        namespace,
        str(spec.get("action") or "ALLOW"),
        tuple(dict.fromkeys(principals)),
        dict(selector) if selector else None,
    )


def _with_egress(workloads: list[Workload], sidecars: list[dict[str, Any]]) -> list[Workload]:
    result = []
    for workload in workloads:
        egress: tuple[str, ...] | None = None
        for sidecar in sidecars:
            namespace, _, _ = _meta(sidecar)
            spec = _spec(sidecar)
            selector = (spec.get("workloadSelector") or {}).get("labels") or {}
            if namespace != workload.namespace or any(
                workload.labels.get(k) != v for k, v in selector.items()
            ):
                continue
            hosts = [str(h) for e in spec.get("egress") or [] for h in e.get("hosts") or []]
            egress = (*(egress or ()), *hosts)
        result.append(workload if egress is None else dataclasses.replace(workload, egress=egress))
    return result


def mesh_objects(objects: Objects) -> list[MeshObject]:
    """Model objects for the Kubernetes and Istio objects of one cluster, by resource key."""

    def items(resource: str) -> list[dict[str, Any]]:
        return list(objects.get(resource, []))

    found: list[MeshObject] = []
    services = [s for s in map(_service, items("services")) if s is not None]
    selectorless = {
        (s.namespace, s.name) for s in services if SERVICE_NAME_LABEL in (s.selector or {})
    }
    workloads = [w for w in map(_pod, items("pods")) if w is not None]
    workloads += [
        w
        for obj in items("endpointslices.discovery.k8s.io")
        for w in _slice_workloads(obj)
        if (w.namespace, w.labels[SERVICE_NAME_LABEL]) in selectorless
    ]
    workloads += [
        w for w in map(_workload_entry, items(f"workloadentries.{NETWORKING}")) if w is not None
    ]
    found += services
    found += _with_egress(workloads, items(f"sidecars.{NETWORKING}"))
    found += [s for s in map(_service_entry, items(f"serviceentries.{NETWORKING}")) if s]
    found += map(_virtual_service, items(f"virtualservices.{NETWORKING}"))
    found += [r for r in map(_destination_rule, items(f"destinationrules.{NETWORKING}")) if r]
    found += map(_peer_authentication, items(f"peerauthentications.{SECURITY}"))
    found += map(_authorization_policy, items(f"authorizationpolicies.{SECURITY}"))
    return found


def root_configmap(namespace: str, root_pem: str) -> dict[str, Any]:
    """The `istio-ca-root-cert` ConfigMap istiod writes into every namespace."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": ROOT_CONFIGMAP,
            "namespace": namespace,
            "labels": {"istio.io/config": "true"},
        },
        "data": {"root-cert.pem": root_pem},
    }


class KubeSync:
    """Keeps a MeshModel equal to what a cluster's store holds, while started."""

    def __init__(self, kube: KubeCluster, model: MeshModel, root_pem: str) -> None:
        self.kube = kube
        self.model = model
        self.root_pem = root_pem
        self._owned: set[tuple[type, str, str]] = set()
        self._dirty = asyncio.Event()
        self._subscriptions: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def changed(event: Event) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._dirty.set)

        self._subscriptions = [self.kube.store.watch(r, callback=changed) for r in RESOURCES]
        self.resync()
        self._task = loop.create_task(self._run())

    @property
    def pending(self) -> bool:
        """A change of the store is waiting to reach the model."""
        return self._dirty.is_set()

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.005)  # coalesce a burst of writes (kubectl apply -f)
            self._dirty.clear()
            try:
                self.resync()
            except Exception:
                log.exception("istiod.kube.resync_failed")

    def resync(self) -> None:
        """Rebuild the owned objects from the store and publish root ConfigMaps."""
        store = self.kube.store
        objects = {resource: store.list(resource)[0] for resource in RESOURCES}
        fresh = mesh_objects(objects)
        keys = {(type(o), o.namespace, o.name) for o in fresh}
        self.model.update(put=fresh, remove=self._owned - keys)
        self._owned = keys
        self._publish_root(objects["namespaces"])

    def _publish_root(self, namespaces: Iterable[dict[str, Any]]) -> None:
        store = self.kube.store
        for namespace_obj in namespaces:
            _, name, _ = _meta(namespace_obj)
            if not name or (namespace_obj.get("metadata") or {}).get("deletionTimestamp"):
                continue
            current = store.find("configmaps", name, ROOT_CONFIGMAP)
            wanted = root_configmap(name, self.root_pem)
            # A namespace may be deleted or the map written by someone else meanwhile.
            with contextlib.suppress(StatusError):
                if current is None:
                    store.create("configmaps", wanted)
                elif (current.get("data") or {}).get("root-cert.pem") != self.root_pem:
                    current["data"] = wanted["data"]
                    store.update("configmaps", current)
