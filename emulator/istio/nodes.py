"""Who a connected proxy is: its xDS node id and metadata, parsed once per stream.

Istio's node id is `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.DOMAIN` (pilot-agent's
`ServiceNode()`); metadata keys are the agent's `ISTIO_META_*` without the prefix.
The configuration shape is chosen from the metadata, as istiod does:

* `GENERATOR: grpc`            -> proxyless gRPC (named resources, `xds:///` targets)
* `INTERCEPTION_MODE: NONE`    -> whitebox Envoy: loopback listeners, `HTTP_PROXY_PORT`
* otherwise                    -> an Envoy sidecar with iptables capture (15001/15006)
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ProxyKind(enum.StrEnum):
    SIDECAR = "sidecar"
    WHITEBOX = "whitebox"
    GRPC = "grpc"


@dataclass(frozen=True, slots=True)
class Proxy:
    node_id: str
    kind: ProxyKind
    namespace: str
    ips: tuple[str, ...]
    pod: str = ""
    """The pod (or workload) name from `POD.NAMESPACE`."""
    labels: Mapping[str, str] = field(default_factory=dict)
    http_proxy_port: int | None = None
    cluster_id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ip(self) -> str:
        return self.ips[0] if self.ips else "127.0.0.1"


class NodeError(ValueError):
    """The node id or metadata cannot identify a proxy; the message says which field."""


def parse_node(node_id: str, metadata: Mapping[str, Any]) -> Proxy:
    """A Proxy from an xDS `Node` (id and metadata as JSON)."""
    parts = node_id.split("~")
    if len(parts) != 4 or not all(parts[:3]):
        raise NodeError(f"node id {node_id!r} is not TYPE~IP~POD.NAMESPACE~DOMAIN")
    node_type, ip, pod_ns, domain = parts
    if node_type not in ("sidecar", "router"):
        raise NodeError(f"node type {node_type!r} is neither sidecar nor router")
    pod, _, ns_from_id = pod_ns.rpartition(".")
    if not pod:
        pod, ns_from_id = pod_ns, ""
    namespace = str(metadata.get("NAMESPACE") or ns_from_id or domain.split(".", 1)[0])
    if not namespace:
        raise NodeError(f"node {node_id!r} names no namespace (id or NAMESPACE metadata)")
    raw_ips = str(metadata.get("INSTANCE_IPS") or ip)
    ips = tuple(a.strip() for a in raw_ips.split(",") if a.strip())
    for address in ips:
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise NodeError(f"INSTANCE_IPS entry {address!r} is not an IP address") from exc
    labels = metadata.get("LABELS") or {}
    if not isinstance(labels, Mapping):
        raise NodeError("LABELS metadata is not a map")
    generator = str(metadata.get("GENERATOR") or "")
    interception = str(metadata.get("INTERCEPTION_MODE") or "REDIRECT").upper()
    if generator == "grpc":
        kind = ProxyKind.GRPC
    elif interception == "NONE":
        kind = ProxyKind.WHITEBOX
    else:
        kind = ProxyKind.SIDECAR
    proxy_port: int | None = None
    raw_port = metadata.get("HTTP_PROXY_PORT")
    if raw_port not in (None, ""):
        try:
            proxy_port = int(str(raw_port))
        except ValueError as exc:
            raise NodeError(f"HTTP_PROXY_PORT {raw_port!r} is not a port number") from exc
        if not 0 < proxy_port < 65536:
            raise NodeError(f"HTTP_PROXY_PORT {raw_port!r} is not a port number")
    return Proxy(
        node_id=node_id,
        kind=kind,
        namespace=namespace,
        ips=ips,
        pod=pod,
        labels={str(k): str(v) for k, v in labels.items()},
        http_proxy_port=proxy_port,
        cluster_id=str(metadata.get("CLUSTER_ID") or ""),
        metadata=dict(metadata),
    )
