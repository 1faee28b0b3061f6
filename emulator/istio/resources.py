"""Pieces shared by the Envoy and the proxyless gRPC renderers: names, endpoints, routes, RBAC.

Everything is proto JSON (dicts with `@type` in typed configs), deterministic for
golden files. Names follow istiod: clusters `outbound|PORT|SUBSET|HOST` and
`inbound|PORT||`, the SNI `outbound_.PORT_.SUBSET_.HOST`.
"""

from __future__ import annotations

from typing import Any

from emulator.istio.model import (
    AuthorizationPolicy,
    HttpRoute,
    MeshSnapshot,
    Service,
    ServicePort,
    VirtualService,
    Workload,
)

Resource = dict[str, Any]

HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
DOWNSTREAM_TLS = (
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)
RAW_BUFFER = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

ADS: Resource = {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}
ROUTER_FILTER: Resource = {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}
TLS_MATCH_KEY = "envoy.transport_socket_match"


def cluster_name(direction: str, port: int, subset: str = "", host: str = "") -> str:
    return f"{direction}|{port}|{subset}|{host}"


def parse_cluster_name(name: str) -> tuple[str, int, str, str] | None:
    """`outbound|80|v1|host` -> ("outbound", 80, "v1", "host"); None when it is not one."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] not in ("outbound", "inbound") or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2], parts[3]


def sni(port: int, subset: str, host: str) -> str:
    return f"outbound_.{port}_.{subset}_.{host}"


def socket_address(address: str, port: int) -> Resource:
    return {"socket_address": {"address": address, "port_value": port}}


def http2_options() -> Resource:
    return {
        HTTP_OPTIONS_KEY: {
            "@type": HTTP_OPTIONS,
            "explicit_http_config": {"http2_protocol_options": {}},
        }
    }


def load_assignment(
    snap: MeshSnapshot, name: str, service: Service, port: ServicePort, subset: str
) -> Resource:
    """A ClusterLoadAssignment: endpoints grouped by locality, each locality weighted.

    gRPC ignores localities without `load_balancing_weight`, so every one has it.
    """
    groups: dict[tuple[str, str, str], list[Workload]] = {}
    for workload in snap.endpoints(service, subset):
        groups.setdefault(workload.locality_parts, []).append(workload)
    localities = []
    for parts, workloads in sorted(groups.items()):
        lb_endpoints = []
        for w in workloads:
            lb: Resource = {
                "endpoint": {"address": socket_address(w.address, port.target)},
                "health_status": "HEALTHY" if w.healthy else "UNHEALTHY",
                "load_balancing_weight": w.weight,
            }
            if w.sidecar:
                lb["metadata"] = {"filter_metadata": {TLS_MATCH_KEY: {"tlsMode": "istio"}}}
            lb_endpoints.append(lb)
        locality = {k: v for k, v in zip(("region", "zone", "sub_zone"), parts, strict=True) if v}
        localities.append(
            {
                "locality": locality,
                "lb_endpoints": lb_endpoints,
                "load_balancing_weight": sum(w.weight for w in workloads),
            }
        )
    return {"cluster_name": name, "endpoints": localities}


def service_clusters(snap: MeshSnapshot, service: Service) -> list[tuple[str, ServicePort, str]]:
    """Every outbound cluster of a service: (name, port, subset), subsets by DestinationRule."""
    rule = snap.destination_rule(service.host, service.namespace)
    subsets = ["", *sorted(rule.subsets)] if rule else [""]
    return [
        (cluster_name("outbound", port.port, subset, service.host), port, subset)
        for port in service.ports
        for subset in subsets
    ]


def resolve_cluster(snap: MeshSnapshot, name: str) -> tuple[Service, ServicePort, str] | None:
    parsed = parse_cluster_name(name)
    if parsed is None or parsed[0] != "outbound":
        return None
    _, number, subset, host = parsed
    service = snap.service(host)
    port = service.port(number) if service else None
    if service is None or port is None or service.host != host:
        return None
    return service, port, subset


def http_routes(
    snap: MeshSnapshot, service: Service, port: ServicePort, *, timeout: bool
) -> list[Resource]:
    """The routes of a service's virtual host: its VirtualService's, or one default route."""
    vs = snap.virtual_service(service)
    if vs is None:
        action: Resource = {"cluster": cluster_name("outbound", port.port, "", service.host)}
        if timeout:
            action["timeout"] = "0s"
        return [{"name": "default", "match": {"prefix": "/"}, "route": action}]
    return [_vs_route(snap, vs, route, port, timeout=timeout) for route in vs.http]


def _vs_route(
    snap: MeshSnapshot, vs: VirtualService, route: HttpRoute, port: ServicePort, *, timeout: bool
) -> Resource:
    weighted: list[tuple[str, int]] = []
    for dest in route.destinations:
        target = snap.service(dest.host, vs.namespace)
        host = target.host if target else dest.host
        name = cluster_name("outbound", dest.port or port.port, dest.subset, host)
        weighted.append((name, dest.weight))
    # Like istiod, drop zero-weight destinations unless nothing else is left.
    kept = [w for w in weighted if w[1] > 0] or weighted[:1]
    action: Resource
    if len(kept) == 1:
        action = {"cluster": kept[0][0]}
    else:
        clusters = [{"name": name, "weight": weight} for name, weight in kept]
        action = {"weighted_clusters": {"clusters": clusters}}
    if timeout:
        action["timeout"] = "0s"
    return {
        "name": f"{vs.namespace}/{vs.name}",
        "match": {"prefix": route.prefix},
        "route": action,
    }


def rbac_filters(policies: list[AuthorizationPolicy], trust_domain: str) -> list[Resource]:
    """DENY then ALLOW RBAC filters for AuthorizationPolicies that match by source principal."""
    filters = []
    for action in ("DENY", "ALLOW"):
        chosen = [p for p in policies if p.action == action]
        if not chosen:
            continue
        rules: dict[str, Resource] = {}
        for policy in chosen:
            principals = [_principal(p, trust_domain) for p in policy.principals]
            if principals:
                rules[f"ns[{policy.namespace}]-policy[{policy.name}]-rule[0]"] = {
                    "permissions": [{"any": True}],
                    "principals": principals,
                }
        filters.append(
            {
                "name": f"istio.authz.{action.lower()}",
                "typed_config": {"@type": RBAC, "rules": {"action": action, "policies": rules}},
            }
        )
    return filters


def _principal(principal: str, trust_domain: str) -> Resource:
    if principal == "*":
        return {"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}}
    uri = principal if principal.startswith("spiffe://") else f"spiffe://{principal}"
    return {"authenticated": {"principal_name": {"exact": uri}}}
