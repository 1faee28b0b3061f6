"""Proxyless gRPC configuration from the mesh model (istiod's `grpc` generator); pure.

gRPC asks for every resource by name, never wildcard:

* LDS `HOST:PORT` (the `xds:///HOST:PORT` target, any alias of the service): an
  `api_listener` whose connection manager takes RDS of the same name;
* LDS `xds.istio.io/grpc/lds/inbound/IP:PORT` (the bootstrap's
  `server_listener_resource_name_template`; Traffic Director's
  `grpc/server?xds.resource.listening_address=IP:PORT` too): the server listener, mTLS
  when PeerAuthentication says STRICT, RBAC filters from AuthorizationPolicy;
* RDS `HOST:PORT`: one virtual host, VirtualService weights as weighted clusters;
* CDS/EDS `outbound|PORT|SUBSET|HOST`: EDS clusters, localities with weights.

Security goes through certificate providers: instance `default` of the bootstrap's
`certificate_providers` (`file_watcher`), certificate names `default` and `ROOTCA`.
Client mTLS needs a DestinationRule with ISTIO_MUTUAL (proxyless has no auto mTLS).
Names that do not resolve are left out: SotW absence means "does not exist".
"""

from __future__ import annotations

from collections.abc import Iterable

from emulator.istio import protos
from emulator.istio.model import MeshSnapshot, MtlsMode, TlsMode
from emulator.istio.nodes import Proxy
from emulator.istio.resources import (
    ADS,
    DOWNSTREAM_TLS,
    HCM,
    ROUTER_FILTER,
    UPSTREAM_TLS,
    Resource,
    http_routes,
    load_assignment,
    rbac_filters,
    resolve_cluster,
    socket_address,
)

INBOUND_PREFIXES = ("xds.istio.io/grpc/lds/inbound/", "grpc/server?xds.resource.listening_address=")
PROVIDER = "default"


def resources(
    snap: MeshSnapshot, proxy: Proxy, type_url: str, names: Iterable[str]
) -> dict[str, Resource]:
    """The named resources of `type_url` that exist for a proxyless gRPC node."""
    found: dict[str, Resource] = {}
    for name in sorted(set(names)):
        resource: Resource | None = None
        if type_url == protos.LISTENER:
            resource = _listener(snap, proxy, name)
        elif type_url == protos.ROUTE:
            resource = _route(snap, proxy, name)
        elif type_url == protos.CLUSTER:
            resource = _cluster(snap, proxy, name)
        elif type_url == protos.ENDPOINT:
            resolved = resolve_cluster(snap, name)
            if resolved is not None:
                resource = load_assignment(snap, name, *resolved)
        if resource is not None:
            found[name] = resource
    return found


def _target(snap: MeshSnapshot, proxy: Proxy, name: str) -> tuple[str, int] | None:
    host, sep, port = name.rpartition(":")
    if not sep or not port.isdigit():
        return None
    service = snap.service(host, proxy.namespace)
    if service is None or service.port(int(port)) is None:
        return None
    return service.host, int(port)


def _listener(snap: MeshSnapshot, proxy: Proxy, name: str) -> Resource | None:
    for prefix in INBOUND_PREFIXES:
        if name.startswith(prefix):
            return _server_listener(snap, proxy, name, name[len(prefix) :])
    if _target(snap, proxy, name) is None:
        return None
    return {
        "name": name,
        "api_listener": {
            "api_listener": {
                "@type": HCM,
                "rds": {"config_source": ADS, "route_config_name": name},
                "http_filters": [ROUTER_FILTER],
            }
        },
    }


def _server_listener(snap: MeshSnapshot, proxy: Proxy, name: str, address: str) -> Resource | None:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        return None
    host = host.strip("[]")
    port = int(port_text)
    workload = snap.workload_at(host) or snap.workload(proxy.namespace, proxy.pod, proxy.ips)
    namespace = workload.namespace if workload else proxy.namespace
    mode = snap.mtls_mode(workload, namespace, port)
    route_config = {
        "name": f"inbound|{port}||",
        "virtual_hosts": [
            {
                "name": f"inbound|http|{port}",
                "domains": ["*"],
                "routes": [
                    {
                        "match": {"prefix": "/"},
                        "decorator": {"operation": "xds-server"},
                        "non_forwarding_action": {},
                    }
                ],
            }
        ],
    }
    policies = snap.authorization(workload, namespace)
    chain: Resource = {
        "name": f"inbound|{port}||",
        "filters": [
            {
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": f"inbound_{host}_{port}",
                    "route_config": route_config,
                    "http_filters": [*rbac_filters(policies, snap.trust_domain), ROUTER_FILTER],
                },
            }
        ],
    }
    # gRPC servers cannot sniff TLS, so PERMISSIVE serves plaintext, as istiod's generator does.
    if mode is MtlsMode.STRICT:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": DOWNSTREAM_TLS,
                "common_tls_context": {
                    "tls_certificate_provider_instance": {
                        "instance_name": PROVIDER,
                        "certificate_name": "default",
                    },
                    "validation_context": {
                        "ca_certificate_provider_instance": {
                            "instance_name": PROVIDER,
                            "certificate_name": "ROOTCA",
                        }
                    },
                },
                "require_client_certificate": True,
            },
        }
    return {
        "name": name,
        "address": socket_address(host, port),
        "traffic_direction": "INBOUND",
        "filter_chains": [chain],
    }


def _route(snap: MeshSnapshot, proxy: Proxy, name: str) -> Resource | None:
    target = _target(snap, proxy, name)
    if target is None:
        return None
    host, number = target
    service = snap.service(host)
    assert service is not None
    port = service.port(number)
    assert port is not None
    domains = list(dict.fromkeys([name, f"{host}:{number}", host]))
    return {
        "name": name,
        "virtual_hosts": [
            {
                "name": f"{host}:{number}",
                "domains": domains,
                "routes": http_routes(snap, service, port, timeout=False),
            }
        ],
    }


def _cluster(snap: MeshSnapshot, proxy: Proxy, name: str) -> Resource | None:
    resolved = resolve_cluster(snap, name)
    if resolved is None:
        return None
    service, _port, subset = resolved
    cluster: Resource = {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": ADS, "service_name": name},
        "lb_policy": "ROUND_ROBIN",
    }
    rule = snap.destination_rule(service.host, proxy.namespace)
    if rule is not None and rule.tls_mode is TlsMode.ISTIO_MUTUAL:
        sans = sorted({w.spiffe(snap.trust_domain) for w in snap.endpoints(service, subset)})
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": UPSTREAM_TLS,
                "common_tls_context": {
                    "tls_certificate_provider_instance": {
                        "instance_name": PROVIDER,
                        "certificate_name": "default",
                    },
                    "validation_context": {
                        "ca_certificate_provider_instance": {
                            "instance_name": PROVIDER,
                            "certificate_name": "ROOTCA",
                        },
                        "match_subject_alt_names": [{"exact": san} for san in sans],
                    },
                },
            },
        }
    return cluster
