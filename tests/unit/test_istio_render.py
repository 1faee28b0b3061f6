"""xDS resources rendered from a mesh model: golden files per node kind, and the rules behind them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator.istio import envoy, grpcgen, protos
from emulator.istio.model import (
    AuthorizationPolicy,
    Destination,
    DestinationRule,
    HttpRoute,
    MeshModel,
    MeshSnapshot,
    MtlsMode,
    PeerAuthentication,
    Protocol,
    Service,
    ServicePort,
    TlsMode,
    VirtualService,
    Workload,
)
from emulator.istio.nodes import NodeError, ProxyKind, parse_node

GOLDEN = Path(__file__).parent.parent / "golden" / "istio"
TD = "mesh-demo.svc.id.goog"
ALL_TYPES = (protos.CLUSTER, protos.ENDPOINT, protos.LISTENER, protos.ROUTE)

SIDECAR = "sidecar~10.8.0.9~client-1.test~test.svc.cluster.local"
WHITEBOX = "sidecar~10.8.0.6~echo-2.test~test.svc.cluster.local"
GRPC = "sidecar~10.8.0.9~client-1.test~test.svc.cluster.local"
GRPC_NAMES = {
    protos.LISTENER: [
        "grpc-echo.test.svc.cluster.local:7070",
        "grpc-echo:7070",
        "xds.istio.io/grpc/lds/inbound/10.8.0.7:7070",
        "nope.test.svc.cluster.local:7070",
    ],
    protos.ROUTE: ["grpc-echo:7070", "echo.test.svc.cluster.local:8080"],
    protos.CLUSTER: ["outbound|7070||grpc-echo.test.svc.cluster.local", "outbound|1|x|nope"],
    protos.ENDPOINT: ["outbound|7070||grpc-echo.test.svc.cluster.local"],
}


def sample() -> MeshSnapshot:
    model = MeshModel(TD)
    model.put(
        Service(
            "echo",
            "test",
            (ServicePort(8080, Protocol.HTTP, "http", 18080),),
            selector={"app": "echo"},
            addresses=("10.12.0.10",),
        ),
        Service("grpc-echo", "test", (ServicePort(7070, Protocol.GRPC, "grpc"),), {"app": "grpc"}),
        Service("db", "other", (ServicePort(5432, Protocol.TCP, "tcp"),), {"app": "db"}),
        Workload("echo-1", "test", "10.8.0.5", "echo", {"app": "echo", "version": "v1"}, "r1/z1"),
        Workload(
            "echo-2",
            "test",
            "10.8.0.6",
            "echo",
            {"app": "echo", "version": "v2"},
            "r1/z2",
            weight=2,
            hbone=True,
        ),
        Workload("grpc-1", "test", "10.8.0.7", "grpc", {"app": "grpc"}, "r1/z1"),
        Workload("db-1", "other", "10.8.0.8", "db", {"app": "db"}, sidecar=False),
        Workload("client-1", "test", "10.8.0.9", "client", {"app": "client"}),
        DestinationRule(
            "echo", "test", "echo", subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}}
        ),
        DestinationRule("grpc-echo", "test", "grpc-echo", TlsMode.ISTIO_MUTUAL),
        VirtualService(
            "echo",
            "test",
            ("echo",),
            (HttpRoute((Destination("echo", 80, "v1"), Destination("echo", 20, "v2"))),),
        ),
        PeerAuthentication("default", "istio-system", MtlsMode.STRICT),
        PeerAuthentication(
            "echo", "test", selector={"app": "echo"}, port_modes={18080: MtlsMode.PERMISSIVE}
        ),
        AuthorizationPolicy("grpc", "test", "ALLOW", (f"{TD}/ns/test/sa/client",), {"app": "grpc"}),
    )
    return model.snapshot()


def render(node_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    snap = sample()
    proxy = parse_node(node_id, metadata)
    out: dict[str, Any] = {}
    for type_url in ALL_TYPES:
        if proxy.kind is ProxyKind.GRPC:
            out[protos.SHORT[type_url]] = grpcgen.resources(
                snap, proxy, type_url, GRPC_NAMES[type_url]
            )
        else:
            out[protos.SHORT[type_url]] = envoy.resources(snap, proxy, type_url)
    return out


CASES = {
    "sidecar": (SIDECAR, {}),
    "whitebox": (WHITEBOX, {"INTERCEPTION_MODE": "NONE", "HTTP_PROXY_PORT": "15007"}),
    "grpc": (GRPC, {"GENERATOR": "grpc"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden(case: str, update_golden: bool) -> None:
    """Each node kind renders exactly the checked-in resources."""
    rendered = json.dumps(render(*CASES[case]), indent=1, sort_keys=True) + "\n"
    path = GOLDEN / f"{case}.json"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.read_text() == rendered


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_resource_parses_as_its_envoy_type(case: str) -> None:
    """Field names and enum values are valid for the xDS message types (what Envoy would NACK)."""
    rendered = render(*CASES[case])
    for type_url in ALL_TYPES:
        for resource in rendered[protos.SHORT[type_url]].values():
            protos.pack(type_url, resource)


def test_sidecar_has_capture_listeners_and_istio_cluster_names() -> None:
    """A sidecar gets 15001/15006 and clusters named outbound|PORT|SUBSET|HOST and inbound|PORT||."""
    rendered = render(*CASES["sidecar"])
    listeners = rendered["LDS"]
    assert listeners["virtualOutbound"]["address"]["socket_address"]["port_value"] == 15001
    assert listeners["virtualInbound"]["address"]["socket_address"]["port_value"] == 15006
    assert listeners["0.0.0.0_8080"]["bind_to_port"] is False
    assert {
        "outbound|8080|v1|echo.test.svc.cluster.local",
        "outbound|8080|v2|echo.test.svc.cluster.local",
        "PassthroughCluster",
    } <= set(rendered["CDS"])


def test_whitebox_binds_loopback_proxy_and_workload_inbound() -> None:
    """INTERCEPTION_MODE NONE gives loopback listeners, the HTTP proxy and inbound on its own IP."""
    listeners = render(*CASES["whitebox"])["LDS"]
    assert "virtualOutbound" not in listeners
    assert {"127.0.0.1_8080", "127.0.0.1_15007", "10.8.0.6_18080", "127.0.0.1_15003"} <= set(
        listeners
    )
    assert listeners["127.0.0.1_15007"]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_protocol_options"
    ] == {"allow_absolute_url": True}


def test_virtual_service_weights_become_weighted_clusters() -> None:
    """An 80/20 VirtualService renders as weighted clusters on the service's route."""
    routes = render(*CASES["sidecar"])["RDS"]["8080"]
    echo = next(v for v in routes["virtual_hosts"] if v["name"].startswith("echo."))
    assert echo["routes"][0]["route"]["weighted_clusters"]["clusters"] == [
        {"name": "outbound|8080|v1|echo.test.svc.cluster.local", "weight": 80},
        {"name": "outbound|8080|v2|echo.test.svc.cluster.local", "weight": 20},
    ]


def test_auto_mtls_uses_endpoint_tls_mode_and_checks_spiffe_sans() -> None:
    """Without a DestinationRule TLS mode, clusters match endpoints by tlsMode and check SANs."""
    rendered = render(*CASES["sidecar"])
    cluster = rendered["CDS"]["outbound|8080||echo.test.svc.cluster.local"]
    tls = cluster["transport_socket_matches"][0]["transport_socket"]["typed_config"]
    sans = tls["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert sans["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": f"spiffe://{TD}/ns/test/sa/echo"}}
    ]
    db = rendered["EDS"]["outbound|5432||db.other.svc.cluster.local"]
    assert "metadata" not in db["endpoints"][0]["lb_endpoints"][0]


def test_peer_authentication_port_level_override() -> None:
    """Mesh-wide STRICT with a PERMISSIVE port override gives TLS and plaintext chains there."""
    listeners = render(*CASES["whitebox"])["LDS"]
    chains = listeners["10.8.0.6_18080"]["filter_chains"]
    assert [c["filter_chain_match"]["transport_protocol"] for c in chains] == ["tls", "raw_buffer"]
    hbone = listeners["127.0.0.1_15003"]["filter_chains"]
    assert [("transport_socket" in c) for c in hbone] == [True]


def test_grpc_resolves_names_and_omits_unknown_ones() -> None:
    """gRPC gets exactly the names that exist; localities carry weights."""
    rendered = render(*CASES["grpc"])
    assert set(rendered["LDS"]) == {
        "grpc-echo.test.svc.cluster.local:7070",
        "grpc-echo:7070",
        "xds.istio.io/grpc/lds/inbound/10.8.0.7:7070",
    }
    assert set(rendered["CDS"]) == {"outbound|7070||grpc-echo.test.svc.cluster.local"}
    cla = rendered["EDS"]["outbound|7070||grpc-echo.test.svc.cluster.local"]
    assert [e["load_balancing_weight"] for e in cla["endpoints"]] == [1]


def test_grpc_server_listener_is_strict_with_rbac() -> None:
    """The server listener requires a client certificate and carries an ALLOW RBAC filter."""
    listener = render(*CASES["grpc"])["LDS"]["xds.istio.io/grpc/lds/inbound/10.8.0.7:7070"]
    chain = listener["filter_chains"][0]
    assert chain["transport_socket"]["typed_config"]["require_client_certificate"] is True
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    assert [f["name"] for f in filters] == ["istio.authz.allow", "envoy.filters.http.router"]


def test_sidecar_egress_limits_imported_services() -> None:
    """A workload with Sidecar egress `./*` sees only its own namespace's services."""
    model = MeshModel(TD)
    snap = sample()
    model.replace(
        [
            *(w for w in snap.workloads if w.name != "client-1"),
            Workload("client-1", "test", "10.8.0.9", "client", {"app": "client"}, egress=("./*",)),
            *snap.services,
        ]
    )
    clusters = envoy.resources(model.snapshot(), parse_node(SIDECAR, {}), protos.CLUSTER)
    assert not any(name.endswith("db.other.svc.cluster.local") for name in clusters)


@pytest.mark.parametrize(
    ("node_id", "metadata", "kind"),
    [
        (SIDECAR, {}, ProxyKind.SIDECAR),
        (SIDECAR, {"INTERCEPTION_MODE": "TPROXY"}, ProxyKind.SIDECAR),
        (SIDECAR, {"INTERCEPTION_MODE": "NONE"}, ProxyKind.WHITEBOX),
        (SIDECAR, {"GENERATOR": "grpc", "INTERCEPTION_MODE": "NONE"}, ProxyKind.GRPC),
    ],
)
def test_node_kind_from_metadata(node_id: str, metadata: dict[str, Any], kind: ProxyKind) -> None:
    """GENERATOR grpc wins; INTERCEPTION_MODE NONE means whitebox; anything else a sidecar."""
    proxy = parse_node(node_id, metadata)
    assert (kind, "test", "client-1") == (proxy.kind, proxy.namespace, proxy.pod)


@pytest.mark.parametrize(
    ("node_id", "metadata", "field"),
    [
        ("client-1", {}, "TYPE~IP"),
        ("gateway~1.2.3.4~a.b~b.svc.cluster.local", {}, "neither sidecar nor router"),
        (SIDECAR, {"INSTANCE_IPS": "10.0.0.1,nope"}, "INSTANCE_IPS"),
        (SIDECAR, {"HTTP_PROXY_PORT": "70000"}, "HTTP_PROXY_PORT"),
        (SIDECAR, {"LABELS": "app=x"}, "LABELS"),
    ],
)
def test_bad_nodes_are_refused_naming_the_field(
    node_id: str, metadata: dict[str, Any], field: str
) -> None:
    """A node that cannot be identified raises NodeError naming what was wrong."""
    with pytest.raises(NodeError, match=field):
        parse_node(node_id, metadata)


def test_mtls_mode_precedence() -> None:
    """Workload port level beats workload, namespace and mesh; the default is PERMISSIVE."""
    snap = sample()
    echo = snap.workload("test", "echo-1")
    client = snap.workload("test", "client-1")
    assert snap.mtls_mode(echo, "test", 18080) is MtlsMode.PERMISSIVE
    assert snap.mtls_mode(client, "test", 18080) is MtlsMode.STRICT
    assert MeshSnapshot(TD).mtls_mode(None, "test", 80) is MtlsMode.PERMISSIVE


def test_short_names_resolve_in_the_callers_namespace() -> None:
    """`echo` means echo.test from namespace test, and nothing from another namespace."""
    snap = sample()
    found = snap.service("echo", "test")
    assert found is not None
    assert found.host == "echo.test.svc.cluster.local"
    assert snap.service("echo", "other") is None
    assert snap.service("db.other", "test") is not None


def test_captured_inbound_returns_to_the_original_destination_from_127_0_0_6() -> None:
    """A sidecar's inbound cluster is Istio's: original destination, source bound to 127.0.0.6."""
    sidecar = render("sidecar~10.8.0.5~echo-1.test~test.svc.cluster.local", {})
    inbound = sidecar["CDS"]["inbound|18080||"]
    whitebox = render(*CASES["whitebox"])["CDS"]["inbound|18080||"]

    assert inbound["type"] == "ORIGINAL_DST"
    assert inbound["upstream_bind_config"]["source_address"]["address"] == "127.0.0.6"
    assert whitebox["type"] == "STATIC"  # bound listeners call the app on loopback
    protos.pack(protos.CLUSTER, inbound)


def test_tcp_port_matches_service_vips_and_passes_the_rest_through() -> None:
    """Captured TCP on a service's port reaches the service only at its VIP; other hosts pass."""
    model = MeshModel(TD)
    model.put(
        Service(
            "db",
            "test",
            (ServicePort(443, Protocol.TCP, "tcp"),),
            {"app": "db"},
            addresses=("10.12.0.7",),
        ),
        Workload("db-1", "test", "10.8.0.8", "db", {"app": "db"}),
        Workload("client-1", "test", "10.8.0.9", "client", {"app": "client"}),
    )
    proxy = parse_node(SIDECAR, {})
    listener = envoy.resources(model.snapshot(), proxy, protos.LISTENER)["0.0.0.0_443"]
    chains = listener["filter_chains"]

    assert chains[0]["filter_chain_match"]["prefix_ranges"] == [
        {"address_prefix": "10.12.0.7", "prefix_len": 32}
    ]
    assert (
        chains[0]["filters"][0]["typed_config"]["cluster"]
        == "outbound|443||db.test.svc.cluster.local"
    )
    assert chains[-1]["filters"][0]["typed_config"]["cluster"] == "PassthroughCluster"
    protos.pack(protos.LISTENER, listener)
