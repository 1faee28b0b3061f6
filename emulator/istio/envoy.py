"""Envoy configuration from the mesh model, in istiod's shapes; pure, proto JSON out.

Sidecar (iptables capture, `INTERCEPTION_MODE` REDIRECT/TPROXY):

* `virtualOutbound` 0.0.0.0:15001, original destination, catch-all to `PassthroughCluster`;
  per service port `0.0.0.0_PORT` (not bound) with RDS `PORT` (HTTP) or tcp_proxy (TCP);
* `virtualInbound` 0.0.0.0:15006, original destination + TLS inspector, one filter chain
  per inbound port and transport (mTLS and/or plaintext by PeerAuthentication), to
  `inbound|PORT||`: an ORIGINAL_DST cluster bound to 127.0.0.6, so the app sees its own
  address as destination and 127.0.0.6 as source (Istio 1.10+; the capture rules
  exempt 127.0.0.6);
* a TCP service port's listener matches each service by its VIP and passes anything
  else through to the original destination, as istiod's per-VIP filter chains do;
* for HBONE-capable workloads `127.0.0.1_15003`: mTLS inbound for connections that
  arrive through the tunnel (the Sidecar `captureMode: NONE` ingress of the original).

Whitebox (`INTERCEPTION_MODE: NONE`, no capture): per service port a listener bound on
127.0.0.1, an HTTP proxy listener on `HTTP_PROXY_PORT` (RDS `http_proxy`), and inbound
listeners bound on the workload's own address at each target port, forwarding to the
app on 127.0.0.1 (Istio's `captureMode: NONE` ingress).

mTLS uses SDS secrets `default` and `ROOTCA` from cluster `sds-grpc`, as Istio's agent
serves them; client clusters check the server's SPIFFE SAN against the service accounts
behind the service, inbound chains require a peer certificate from the trust domain,
and the inbound HTTP connection manager forwards the caller's identity in
`x-forwarded-client-cert`. Outbound TLS follows the DestinationRule: ISTIO_MUTUAL,
DISABLE, or unset = auto mTLS (per endpoint, by its `tlsMode: istio` metadata).
"""

from __future__ import annotations

from emulator.istio import protos
from emulator.istio.model import MeshSnapshot, MtlsMode, Protocol, Service, TlsMode, Workload
from emulator.istio.nodes import Proxy, ProxyKind
from emulator.istio.resources import (
    ADS,
    DOWNSTREAM_TLS,
    HCM,
    RAW_BUFFER,
    ROUTER_FILTER,
    TCP_PROXY,
    TLS_MATCH_KEY,
    UPSTREAM_TLS,
    Resource,
    cluster_name,
    http2_options,
    http_routes,
    load_assignment,
    rbac_filters,
    service_clusters,
    sni,
    socket_address,
)

OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
HBONE_INBOUND_PORT = 15003
INBOUND_SOURCE = "127.0.0.6"
"""Where a sidecar's inbound connections to the app come from (exempt from capture)."""
SDS_CLUSTER = "sds-grpc"
ORIGINAL_DST = {
    "name": "envoy.filters.listener.original_dst",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
    },
}
TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {
        "@type": (
            "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
        )
    },
}


class _Context:
    """What every renderer needs about one proxy, computed once."""

    def __init__(self, snap: MeshSnapshot, proxy: Proxy) -> None:
        self.snap = snap
        self.proxy = proxy
        self.workload: Workload | None = snap.workload(proxy.namespace, proxy.pod, proxy.ips)
        self.services = sorted(
            snap.visible_services(self.workload, proxy.namespace), key=lambda s: s.host
        )
        self.whitebox = proxy.kind is ProxyKind.WHITEBOX

    def ports(self) -> dict[int, list[Service]]:
        """Outbound service port -> the services on it."""
        found: dict[int, list[Service]] = {}
        for service in self.services:
            for port in service.ports:
                found.setdefault(port.port, []).append(service)
        return dict(sorted(found.items()))

    def inbound(self) -> list[tuple[int, Protocol]]:
        return self.snap.inbound_ports(self.workload) if self.workload else []

    def hbone_target(self) -> int | None:
        if self.workload is None or not self.workload.hbone:
            return None
        if self.workload.hbone_port:
            return self.workload.hbone_port
        http = [port for port, protocol in self.inbound() if protocol.is_http]
        return http[0] if http else 8080


def resources(snap: MeshSnapshot, proxy: Proxy, type_url: str) -> dict[str, Resource]:
    """Every resource of `type_url` for an Envoy proxy, by name (secrets excepted)."""
    ctx = _Context(snap, proxy)
    render = {
        protos.LISTENER: _listeners,
        protos.ROUTE: _routes,
        protos.CLUSTER: _clusters,
        protos.ENDPOINT: _endpoints,
    }.get(type_url)
    if render is None:
        return {}
    return {r.get("name") or r["cluster_name"]: r for r in render(ctx)}


# TLS.


def sds_secret(name: str) -> Resource:
    return {
        "name": name,
        "sds_config": {
            "api_config_source": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": SDS_CLUSTER}}],
                "set_node_on_first_message_only": True,
            },
            "initial_fetch_timeout": "0s",
            "resource_api_version": "V3",
        },
    }


def _common_tls(sans: list[Resource], alpn: list[str]) -> Resource:
    return {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
        "alpn_protocols": alpn,
        "tls_certificate_sds_secret_configs": [sds_secret("default")],
        "combined_validation_context": {
            "default_validation_context": {"match_typed_subject_alt_names": sans},
            "validation_context_sds_secret_config": sds_secret("ROOTCA"),
        },
    }


def _upstream_tls(sans: list[str], server_name: str, h2: bool) -> Resource:
    matchers = [{"san_type": "URI", "matcher": {"exact": san}} for san in sans]
    context = _common_tls(matchers, ["istio", "h2"] if h2 else ["istio"])
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {"@type": UPSTREAM_TLS, "common_tls_context": context, "sni": server_name},
    }


def _downstream_tls(trust_domain: str) -> Resource:
    matcher = {"san_type": "URI", "matcher": {"prefix": f"spiffe://{trust_domain}/"}}
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": DOWNSTREAM_TLS,
            "common_tls_context": _common_tls([matcher], ["h2", "http/1.1"]),
            "require_client_certificate": True,
        },
    }


# Clusters and endpoints.


def _clusters(ctx: _Context) -> list[Resource]:
    clusters = []
    for service in ctx.services:
        for name, port, subset in service_clusters(ctx.snap, service):
            cluster: Resource = {
                "name": name,
                "type": "EDS",
                "eds_cluster_config": {"eds_config": ADS, "service_name": name},
                "connect_timeout": "10s",
                "lb_policy": "ROUND_ROBIN",
            }
            if port.protocol.is_h2:
                cluster["typed_extension_protocol_options"] = http2_options()
            rule = ctx.snap.destination_rule(service.host, ctx.proxy.namespace)
            mode = rule.tls_mode if rule else None
            sans = sorted(
                {w.spiffe(ctx.snap.trust_domain) for w in ctx.snap.endpoints(service, subset)}
            )
            tls = _upstream_tls(sans, sni(port.port, subset, service.host), port.protocol.is_h2)
            if mode is TlsMode.ISTIO_MUTUAL:
                cluster["transport_socket"] = tls
            elif mode is None:
                cluster["transport_socket_matches"] = [
                    {
                        "name": "tlsMode-istio",
                        "match": {"tlsMode": "istio"},
                        "transport_socket": tls,
                    },
                    {
                        "name": "tlsMode-disabled",
                        "match": {},
                        "transport_socket": {
                            "name": "envoy.transport_sockets.raw_buffer",
                            "typed_config": {"@type": RAW_BUFFER},
                        },
                    },
                ]
            clusters.append(cluster)
    for target, protocol in _inbound_targets(ctx):
        # Captured inbound goes back to the original destination; the tunnel's 15003
        # and whitebox listeners have no useful one and call the app on loopback.
        captured = not ctx.whitebox and target != HBONE_INBOUND_PORT
        clusters.append(
            _inbound_cluster(target, protocol, _app_port(ctx, target), captured=captured)
        )
    if not ctx.whitebox:
        clusters += [
            {
                "name": "PassthroughCluster",
                "type": "ORIGINAL_DST",
                "connect_timeout": "10s",
                "lb_policy": "CLUSTER_PROVIDED",
            },
            {
                "name": "InboundPassthroughCluster",
                "type": "ORIGINAL_DST",
                "connect_timeout": "10s",
                "lb_policy": "CLUSTER_PROVIDED",
                "upstream_bind_config": {
                    "source_address": {"address": INBOUND_SOURCE, "port_value": 0}
                },
            },
            {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "10s"},
        ]
    return clusters


def _inbound_targets(ctx: _Context) -> list[tuple[int, Protocol]]:
    targets = list(ctx.inbound())
    if ctx.hbone_target() is not None:
        targets.append((HBONE_INBOUND_PORT, Protocol.HTTP))
    return targets


def _app_port(ctx: _Context, port: int) -> int:
    target = ctx.hbone_target()
    return target if port == HBONE_INBOUND_PORT and target is not None else port


def _inbound_cluster(port: int, protocol: Protocol, app_port: int, *, captured: bool) -> Resource:
    name = cluster_name("inbound", port)
    cluster: Resource
    if captured:
        cluster = {
            "name": name,
            "type": "ORIGINAL_DST",
            "connect_timeout": "10s",
            "lb_policy": "CLUSTER_PROVIDED",
            "upstream_bind_config": {
                "source_address": {"address": INBOUND_SOURCE, "port_value": 0}
            },
        }
    else:
        endpoint = {"endpoint": {"address": socket_address("127.0.0.1", app_port)}}
        cluster = {
            "name": name,
            "type": "STATIC",
            "connect_timeout": "10s",
            "lb_policy": "ROUND_ROBIN",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
        }
    if protocol.is_h2:
        cluster["typed_extension_protocol_options"] = http2_options()
    return cluster


def _endpoints(ctx: _Context) -> list[Resource]:
    return [
        load_assignment(ctx.snap, name, service, port, subset)
        for service in ctx.services
        for name, port, subset in service_clusters(ctx.snap, service)
    ]


# Routes.


def _domains(ctx: _Context, service: Service, port: int) -> list[str]:
    names = [
        a
        for a in service.aliases()
        if "." in a or service.namespace == ctx.proxy.namespace or a == service.hostname
    ]
    names += list(service.addresses)
    with_port = [f"{n}:{port}" for n in names]
    return [d for pair in zip(names, with_port, strict=True) for d in pair]


def _routes(ctx: _Context) -> list[Resource]:
    configs = []
    for port, services in ctx.ports().items():
        http = [s for s in services if (p := s.port(port)) is not None and p.protocol.is_http]
        if not http:
            continue
        hosts = []
        for service in http:
            service_port = service.port(port)
            assert service_port is not None
            domains = _domains(ctx, service, port)
            if ctx.whitebox and len(http) == 1:
                domains.append("*")
            hosts.append(
                {
                    "name": f"{service.host}:{port}",
                    "domains": domains,
                    "routes": http_routes(ctx.snap, service, service_port, timeout=True),
                }
            )
        if not ctx.whitebox:
            hosts.append(
                {
                    "name": "allow_any",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": "allow_any",
                            "match": {"prefix": "/"},
                            "route": {"cluster": "PassthroughCluster", "timeout": "0s"},
                        }
                    ],
                }
            )
        configs.append({"name": str(port), "virtual_hosts": hosts, "validate_clusters": False})
    if ctx.whitebox and ctx.proxy.http_proxy_port:
        hosts = []
        for service in ctx.services:
            for service_port in service.ports:
                if not service_port.protocol.is_http:
                    continue
                domains = [d for d in _domains(ctx, service, service_port.port) if ":" in d]
                if service_port.port == 80:
                    domains += [d.rsplit(":", 1)[0] for d in domains]
                hosts.append(
                    {
                        "name": f"{service.host}:{service_port.port}",
                        "domains": domains,
                        "routes": http_routes(ctx.snap, service, service_port, timeout=True),
                    }
                )
        configs.append({"name": "http_proxy", "virtual_hosts": hosts, "validate_clusters": False})
    return configs


# Listeners.


def _hcm(stat_prefix: str, **fields: object) -> Resource:
    http_filters = fields.pop("http_filters", None) or [ROUTER_FILTER]
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM,
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            **fields,
            "http_filters": http_filters,
        },
    }


def _rds(name: str) -> Resource:
    return {"config_source": ADS, "route_config_name": name}


def _tcp_proxy(stat_prefix: str, cluster: str) -> Resource:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": TCP_PROXY, "stat_prefix": stat_prefix, "cluster": cluster},
    }


def _outbound_chains(ctx: _Context, port: int, services: list[Service]) -> list[Resource]:
    http = [s for s in services if (p := s.port(port)) is not None and p.protocol.is_http]
    prefix = f"outbound_{'127.0.0.1' if ctx.whitebox else '0.0.0.0'}_{port}"
    if http:
        return [{"filters": [_hcm(prefix, rds=_rds(str(port)))]}]
    by_vip = [s for s in services if s.addresses]
    if ctx.whitebox or not by_vip:
        # A bound listener (or VIP-less services): the first service takes the port.
        return [
            {"filters": [_tcp_proxy(prefix, cluster_name("outbound", port, "", services[0].host))]}
        ]
    # Captured TCP reaches this listener for any destination on the port: only a
    # service's VIP selects it, everything else passes through.
    chains: list[Resource] = [
        {
            "filter_chain_match": {
                "prefix_ranges": [
                    {"address_prefix": address, "prefix_len": 128 if ":" in address else 32}
                    for address in service.addresses
                ]
            },
            "filters": [_tcp_proxy(prefix, cluster_name("outbound", port, "", service.host))],
        }
        for service in by_vip
    ]
    chains.append(
        {
            "name": "PassthroughFilterChain",
            "filters": [_tcp_proxy("PassthroughCluster", "PassthroughCluster")],
        }
    )
    return chains


def _listeners(ctx: _Context) -> list[Resource]:
    listeners: list[Resource] = []
    bind = "127.0.0.1" if ctx.whitebox else "0.0.0.0"
    if not ctx.whitebox:
        listeners.append(
            {
                "name": "virtualOutbound",
                "address": socket_address("0.0.0.0", OUTBOUND_PORT),
                "use_original_dst": True,
                "traffic_direction": "OUTBOUND",
                "filter_chains": [
                    {
                        "name": "virtualOutbound-catchall-tcp",
                        "filters": [_tcp_proxy("PassthroughCluster", "PassthroughCluster")],
                    }
                ],
            }
        )
    for port, services in ctx.ports().items():
        listener: Resource = {
            "name": f"{bind}_{port}",
            "address": socket_address(bind, port),
            "traffic_direction": "OUTBOUND",
            "filter_chains": _outbound_chains(ctx, port, services),
        }
        if not ctx.whitebox:
            listener["bind_to_port"] = False
        listeners.append(listener)
    if ctx.whitebox and ctx.proxy.http_proxy_port:
        listeners.append(
            {
                "name": f"127.0.0.1_{ctx.proxy.http_proxy_port}",
                "address": socket_address("127.0.0.1", ctx.proxy.http_proxy_port),
                "traffic_direction": "OUTBOUND",
                "filter_chains": [
                    {
                        "filters": [
                            _hcm(
                                f"outbound_127.0.0.1_{ctx.proxy.http_proxy_port}",
                                rds=_rds("http_proxy"),
                                http_protocol_options={"allow_absolute_url": True},
                            )
                        ]
                    }
                ],
            }
        )
    listeners += _inbound_listeners(ctx)
    return listeners


def _inbound_listeners(ctx: _Context) -> list[Resource]:
    listeners = []
    ns = ctx.proxy.namespace
    if not ctx.whitebox:
        chains = []
        for port, protocol in ctx.inbound():
            mode = ctx.snap.mtls_mode(ctx.workload, ns, port)
            chains += _inbound_chains(ctx, port, protocol, mode, match_port=True)
        if ctx.snap.mtls_mode(ctx.workload, ns, 0) is not MtlsMode.STRICT:
            chains.append(
                {
                    "name": "virtualInbound-catchall-tcp",
                    "filters": [
                        _tcp_proxy("InboundPassthroughCluster", "InboundPassthroughCluster")
                    ],
                }
            )
        listeners.append(
            {
                "name": "virtualInbound",
                "address": socket_address("0.0.0.0", INBOUND_PORT),
                "traffic_direction": "INBOUND",
                "listener_filters": [ORIGINAL_DST, TLS_INSPECTOR],
                "continue_on_listener_filters_timeout": True,
                "filter_chains": chains,
            }
        )
    else:
        for port, protocol in ctx.inbound():
            mode = ctx.snap.mtls_mode(ctx.workload, ns, port)
            listeners.append(_bound_inbound(ctx, ctx.proxy.ip, port, protocol, mode))
    if ctx.hbone_target() is not None:
        mode = ctx.snap.mtls_mode(ctx.workload, ns, HBONE_INBOUND_PORT)
        listeners.append(_bound_inbound(ctx, "127.0.0.1", HBONE_INBOUND_PORT, Protocol.HTTP, mode))
    return listeners


def _bound_inbound(
    ctx: _Context, address: str, port: int, protocol: Protocol, mode: MtlsMode
) -> Resource:
    listener: Resource = {
        "name": f"{address}_{port}",
        "address": socket_address(address, port),
        "traffic_direction": "INBOUND",
        "filter_chains": _inbound_chains(ctx, port, protocol, mode, match_port=False),
    }
    if mode is MtlsMode.PERMISSIVE:
        listener["listener_filters"] = [TLS_INSPECTOR]
        listener["continue_on_listener_filters_timeout"] = True
    return listener


def _inbound_chains(
    ctx: _Context, port: int, protocol: Protocol, mode: MtlsMode, *, match_port: bool
) -> list[Resource]:
    cluster = cluster_name("inbound", port)
    if protocol.is_http:
        policies = ctx.snap.authorization(ctx.workload, ctx.proxy.namespace)
        route_config = {
            "name": cluster,
            "validate_clusters": False,
            "virtual_hosts": [
                {
                    "name": f"inbound|http|{port}",
                    "domains": ["*"],
                    "routes": [
                        {
                            "name": "default",
                            "match": {"prefix": "/"},
                            "route": {"cluster": cluster, "timeout": "0s"},
                        }
                    ],
                }
            ],
        }
        filters = [
            _hcm(
                f"inbound_0.0.0.0_{port}",
                route_config=route_config,
                forward_client_cert_details="APPEND_FORWARD",
                set_current_client_cert_details={"subject": True, "dns": True, "uri": True},
                http_filters=[*rbac_filters(policies, ctx.snap.trust_domain), ROUTER_FILTER],
            )
        ]
    else:
        filters = [_tcp_proxy(cluster, cluster)]
    chains = []
    transports = {
        MtlsMode.STRICT: ["tls"],
        MtlsMode.PERMISSIVE: ["tls", "raw_buffer"],
        MtlsMode.DISABLE: [""],
    }[mode]
    for transport in transports:
        match: Resource = {"destination_port": port} if match_port else {}
        # transport_protocol is only known where a TLS inspector runs.
        if transport and (match_port or mode is MtlsMode.PERMISSIVE):
            match["transport_protocol"] = transport
        chain: Resource = {"name": f"{cluster}{transport and '-' + transport}", "filters": filters}
        if match:
            chain["filter_chain_match"] = match
        if transport == "tls":
            chain["transport_socket"] = _downstream_tls(ctx.snap.trust_domain)
        chains.append(chain)
    return chains


__all__ = ["TLS_MATCH_KEY", "resources", "sds_secret"]
