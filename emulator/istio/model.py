"""The mesh as istiod sees it: services, workloads, routing and security policy.

This is the control plane's whole input. It is deliberately small and explicit
(frozen dataclasses, no Kubernetes objects), so that resource rendering is a
pure function of a `MeshSnapshot` and a proxy, testable with golden files.
`from_kube.py` fills a model from the emulated Kubernetes API; tests and the
launcher's registration path (WorkloadEntry auto-registration in Istio) put
objects directly.

Kinds and their Istio/Kubernetes counterparts:

* `Service`               Service (selector) or ServiceEntry (hosts, workloadSelector)
* `Workload`              Pod or WorkloadEntry: address, labels, locality, identity
* `VirtualService`        HTTP routes with weighted destinations (prefix match only)
* `DestinationRule`       TLS mode and subsets for a host
* `PeerAuthentication`    mTLS mode (mesh, namespace or workload scope; per port)
* `AuthorizationPolicy`   ALLOW/DENY by source principal (the RBAC basics)

`MeshModel` is the mutable, thread-safe holder; every change bumps the
generation and wakes subscribers (the xDS server pushes on that).
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.changes import Changes

DOMAIN_SUFFIX = "cluster.local"
ROOT_NAMESPACE = "istio-system"
"""Policies in the root namespace apply mesh-wide, as in Istio's default mesh config."""

Labels = Mapping[str, str]


class Protocol(enum.StrEnum):
    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    TCP = "TCP"
    TLS = "TLS"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC)

    @property
    def is_h2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)

    @classmethod
    def from_port(cls, name: str, app_protocol: str | None = None) -> Protocol:
        """Istio's protocol selection: `appProtocol` first, else the port name's prefix.

        Unknown protocols are TCP here (Istio would sniff; we do not).
        """
        for candidate in (app_protocol or "", name.split("-", 1)[0]):
            value = candidate.lower()
            if value in ("http", "http1", "https"):
                return cls.HTTP if value != "https" else cls.TLS
            if value in ("http2", "h2c"):
                return cls.HTTP2
            if value in ("grpc", "grpc-web"):
                return cls.GRPC
            if value in ("tcp", "mongo", "mysql", "redis"):
                return cls.TCP
            if value == "tls":
                return cls.TLS
        return cls.TCP


class TlsMode(enum.StrEnum):
    """DestinationRule `trafficPolicy.tls.mode`."""

    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


class MtlsMode(enum.StrEnum):
    """PeerAuthentication `mtls.mode` (UNSET is None: inherit)."""

    STRICT = "STRICT"
    PERMISSIVE = "PERMISSIVE"
    DISABLE = "DISABLE"


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    protocol: Protocol = Protocol.HTTP
    name: str = ""
    target_port: int | None = None

    @property
    def target(self) -> int:
        return self.target_port or self.port


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    namespace: str
    ports: tuple[ServicePort, ...]
    selector: Labels | None = None
    """Labels of the workloads behind it (same namespace); None selects nothing."""
    hostname: str = ""
    """The host clients dial; empty means NAME.NAMESPACE.svc.cluster.local."""
    addresses: tuple[str, ...] = ()
    """Virtual IPs (ClusterIP, ServiceEntry addresses)."""

    @property
    def host(self) -> str:
        return self.hostname or f"{self.name}.{self.namespace}.svc.{DOMAIN_SUFFIX}"

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    def aliases(self) -> tuple[str, ...]:
        """Every name a client in the mesh may use for this service (Istio's vhost domains)."""
        if self.hostname:
            return (self.hostname,)
        base = f"{self.name}.{self.namespace}"
        return (self.host, f"{base}.svc", base, self.name)


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    namespace: str
    address: str
    service_account: str = "default"
    labels: Labels = field(default_factory=dict)
    locality: str = ""
    """`region/zone/subzone`, any suffix may be missing."""
    weight: int = 1
    sidecar: bool = True
    """Whether it speaks Istio mTLS (an Envoy sidecar, a proxyless gRPC app, krun)."""
    hbone: bool = False
    """Whether it accepts connections through HBONE on 15003 (Cloud Run through krun)."""
    hbone_port: int | None = None
    """Where 15003 forwards to; default: the first HTTP target port that selects it."""
    healthy: bool = True
    egress: tuple[str, ...] | None = None
    """Sidecar `egress.hosts` (`ns/host`, `./*`, `*/host`); None imports every service."""

    def spiffe(self, trust_domain: str) -> str:
        return spiffe_id(trust_domain, self.namespace, self.service_account)

    @property
    def locality_parts(self) -> tuple[str, str, str]:
        parts = [*self.locality.split("/"), "", "", ""][:3] if self.locality else ["", "", ""]
        return parts[0], parts[1], parts[2]


@dataclass(frozen=True, slots=True)
class Destination:
    host: str
    weight: int = 100
    subset: str = ""
    port: int | None = None


@dataclass(frozen=True, slots=True)
class HttpRoute:
    destinations: tuple[Destination, ...]
    prefix: str = "/"


@dataclass(frozen=True, slots=True)
class VirtualService:
    name: str
    namespace: str
    hosts: tuple[str, ...]
    http: tuple[HttpRoute, ...]


@dataclass(frozen=True, slots=True)
class DestinationRule:
    name: str
    namespace: str
    host: str
    tls_mode: TlsMode | None = None
    subsets: Mapping[str, Labels] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PeerAuthentication:
    name: str
    namespace: str
    mode: MtlsMode | None = None
    selector: Labels | None = None
    port_modes: Mapping[int, MtlsMode] = field(default_factory=dict)
    """Per target port, only honoured on a policy with a selector (as in Istio)."""


@dataclass(frozen=True, slots=True)
class AuthorizationPolicy:
    name: str
    namespace: str
    action: str = "ALLOW"
    """ALLOW or DENY."""
    principals: tuple[str, ...] = ()
    """Source principals as Istio writes them (`TD/ns/NS/sa/SA`, `*`); empty matches nothing."""
    selector: Labels | None = None


MeshObject = (
    Service | Workload | VirtualService | DestinationRule | PeerAuthentication | AuthorizationPolicy
)


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def selects(selector: Labels | None, labels: Labels) -> bool:
    """A Kubernetes equality selector; None selects nothing, {} everything."""
    if selector is None:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


def _egress_allows(patterns: tuple[str, ...], own_namespace: str, service: Service) -> bool:
    for pattern in patterns:
        namespace, _, host = pattern.partition("/")
        if not host:
            namespace, host = "*", namespace
        if namespace == ".":
            namespace = own_namespace
        if namespace == "~" or namespace not in ("*", service.namespace):
            continue
        if host in ("*", service.host) or host in service.aliases():
            return True
        if host.startswith("*.") and service.host.endswith(host[1:]):
            return True
    return False


@dataclass(frozen=True, slots=True)
class MeshSnapshot:
    """One consistent view of the model; every query is pure."""

    trust_domain: str
    generation: int = 0
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    virtual_services: tuple[VirtualService, ...] = ()
    destination_rules: tuple[DestinationRule, ...] = ()
    peer_authentications: tuple[PeerAuthentication, ...] = ()
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()

    # Services and endpoints.

    def service(self, host: str, namespace: str | None = None) -> Service | None:
        """The service a client names by any alias; short names resolve in `namespace` first."""
        candidates = [s for s in self.services if host in s.aliases()]
        if namespace is not None:
            local = [s for s in candidates if s.namespace == namespace]
            candidates = local or [s for s in candidates if host == s.host or "." in host]
        return min(candidates, key=lambda s: (s.namespace, s.name), default=None)

    def visible_services(self, workload: Workload | None, namespace: str) -> list[Service]:
        """Services a proxy imports: all, or those its Sidecar egress hosts allow."""
        if workload is None or workload.egress is None:
            return list(self.services)
        egress = workload.egress
        return [s for s in self.services if _egress_allows(egress, namespace, s)]

    def endpoints(self, service: Service, subset: str = "") -> list[Workload]:
        """Workloads behind a service (and subset), healthy or not, in a stable order."""
        subset_labels: Labels = {}
        if subset:
            rule = self.destination_rule(service.host, service.namespace)
            subset_labels = rule.subsets.get(subset, {}) if rule else {}
            if rule is None or subset not in rule.subsets:
                return []
        found = [
            w
            for w in self.workloads
            if w.namespace == service.namespace
            and selects(service.selector, w.labels)
            and selects(subset_labels, w.labels)
        ]
        return sorted(found, key=lambda w: (w.address, w.name))

    def services_of(self, workload: Workload) -> list[Service]:
        return [
            s
            for s in self.services
            if s.namespace == workload.namespace and selects(s.selector, workload.labels)
        ]

    def inbound_ports(self, workload: Workload) -> list[tuple[int, Protocol]]:
        """Target ports the workload serves, each once, with the first protocol seen."""
        ports: dict[int, Protocol] = {}
        for service in sorted(self.services_of(workload), key=lambda s: (s.namespace, s.name)):
            for port in service.ports:
                ports.setdefault(port.target, port.protocol)
        return sorted(ports.items())

    def workload(self, namespace: str, name: str = "", ips: Iterable[str] = ()) -> Workload | None:
        """A proxy's workload: by name in its namespace, else by one of its addresses."""
        in_namespace = [w for w in self.workloads if w.namespace == namespace]
        by_name = next((w for w in in_namespace if name and w.name == name), None)
        if by_name is not None:
            return by_name
        wanted = set(ips)
        return next((w for w in in_namespace if w.address in wanted), None)

    def workload_at(self, address: str) -> Workload | None:
        return next((w for w in self.workloads if w.address == address), None)

    # Policy.

    def destination_rule(self, host: str, namespace: str) -> DestinationRule | None:
        """Istio's lookup order: the client's namespace, the service's, then the root namespace."""
        service = self.service(host, namespace)
        full = service.host if service else host
        order = [namespace, service.namespace if service else namespace, ROOT_NAMESPACE]
        for ns in dict.fromkeys(order):
            for rule in self.destination_rules:
                if rule.namespace != ns:
                    continue
                target = self.service(rule.host, rule.namespace)
                if (target.host if target else rule.host) == full:
                    return rule
        return None

    def virtual_service(self, service: Service) -> VirtualService | None:
        for vs in sorted(self.virtual_services, key=lambda v: (v.namespace, v.name)):
            for host in vs.hosts:
                target = self.service(host, vs.namespace)
                if target is not None and target.host == service.host:
                    return vs
        return None

    def mtls_mode(self, workload: Workload | None, namespace: str, port: int) -> MtlsMode:
        """The effective PeerAuthentication mode at a target port (default PERMISSIVE)."""
        labels: Labels = workload.labels if workload else {}
        workload_level = [
            p
            for p in self.peer_authentications
            if p.namespace == namespace and p.selector and selects(p.selector, labels)
        ]
        namespace_level = [
            p for p in self.peer_authentications if p.namespace == namespace and not p.selector
        ]
        mesh_level = [
            p for p in self.peer_authentications if p.namespace == ROOT_NAMESPACE and not p.selector
        ]
        for policies in (workload_level, namespace_level, mesh_level):
            for policy in sorted(policies, key=lambda p: p.name):
                if policy.selector and port in policy.port_modes:
                    return policy.port_modes[port]
                if policy.mode is not None:
                    return policy.mode
        return MtlsMode.PERMISSIVE

    def authorization(self, workload: Workload | None, namespace: str) -> list[AuthorizationPolicy]:
        labels: Labels = workload.labels if workload else {}
        return sorted(
            (
                p
                for p in self.authorization_policies
                if p.namespace in (namespace, ROOT_NAMESPACE)
                and (p.selector is None or selects(p.selector, labels))
            ),
            key=lambda p: (p.namespace, p.name),
        )

    def to_json(self) -> dict[str, Any]:
        """The snapshot as plain JSON (the debug endpoint's /debug/mesh)."""

        def plain(obj: Any) -> Any:
            if isinstance(obj, enum.Enum):
                return obj.value
            if isinstance(obj, Mapping):
                return {str(k): plain(v) for k, v in obj.items()}
            if isinstance(obj, tuple | list):
                return [plain(v) for v in obj]
            if hasattr(obj, "__dataclass_fields__"):
                return {k: plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
            return obj

        return {k: plain(getattr(self, k)) for k in self.__dataclass_fields__}


_KINDS: dict[type, str] = {
    Service: "services",
    Workload: "workloads",
    VirtualService: "virtual_services",
    DestinationRule: "destination_rules",
    PeerAuthentication: "peer_authentications",
    AuthorizationPolicy: "authorization_policies",
}


class MeshModel:
    """The mutable mesh of one istiod; thread-safe, with change notification."""

    def __init__(self, trust_domain: str) -> None:
        self.trust_domain = trust_domain
        self._objects: dict[str, dict[tuple[str, str], MeshObject]] = {
            k: {} for k in _KINDS.values()
        }
        self._snapshot: MeshSnapshot | None = None
        self._lock = threading.Lock()
        self._changes = Changes()

    @property
    def generation(self) -> int:
        return self._changes.generation

    def put(self, *objects: MeshObject) -> None:
        """Add or replace objects (by kind, namespace and name) as one change."""
        with self._lock:
            for obj in objects:
                self._objects[_KINDS[type(obj)]][(obj.namespace, obj.name)] = obj
        self._changed()

    def remove(self, kind: type, namespace: str, name: str) -> bool:
        """Remove one object; whether it existed."""
        with self._lock:
            found = self._objects[_KINDS[kind]].pop((namespace, name), None) is not None
        if found:
            self._changed()
        return found

    def update(
        self,
        put: Iterable[MeshObject] = (),
        remove: Iterable[tuple[type, str, str]] = (),
    ) -> None:
        """Remove (kind, namespace, name) keys and put objects, as one change."""
        with self._lock:
            for kind, namespace, name in remove:
                self._objects[_KINDS[kind]].pop((namespace, name), None)
            for obj in put:
                self._objects[_KINDS[type(obj)]][(obj.namespace, obj.name)] = obj
        self._changed()

    def keys(self) -> set[tuple[type, str, str]]:
        """(kind, namespace, name) of every object."""
        by_name = {name: kind for kind, name in _KINDS.items()}
        with self._lock:
            return {
                (by_name[kind], ns, name)
                for kind, objs in self._objects.items()
                for ns, name in objs
            }

    def replace(self, objects: Iterable[MeshObject]) -> None:
        """Replace the whole model in one change (the Kubernetes adapter's resync)."""
        fresh: dict[str, dict[tuple[str, str], MeshObject]] = {k: {} for k in _KINDS.values()}
        for obj in objects:
            fresh[_KINDS[type(obj)]][(obj.namespace, obj.name)] = obj
        with self._lock:
            self._objects = fresh
        self._changed()

    def snapshot(self) -> MeshSnapshot:
        with self._lock:
            generation = self._changes.generation
            if self._snapshot is None or self._snapshot.generation != generation:
                ordered = {
                    kind: tuple(objs[key] for key in sorted(objs))
                    for kind, objs in self._objects.items()
                }
                self._snapshot = MeshSnapshot(
                    self.trust_domain,
                    generation,
                    **ordered,  # type: ignore[arg-type]
                )
            return self._snapshot

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Set `event` (in `loop`) at the next change."""
        self._changes.subscribe(loop, event)

    def _changed(self) -> None:
        self._changes.bump()
