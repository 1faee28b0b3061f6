"""The addressing plan: a pure function from a world to names and addresses.

The world network (a /16 by default) is cut into /24 subnets, routed by the
world namespace (its bridge carries each subnet's gateway, `.1`):

| subnet | holds |
|---|---|
| 0 `services` | emulator host `.2`; Google services `.10` up; Cloud Run front end `.20`; |
|  | each cluster's API server `.30` up (:443); each mesh cluster's istiod `.40` up (:15012) |
| 1 `run` | Cloud Run instances, `.10` up |
| 2 `pods` | pods, `.10` up |
| 3 `clients` | test drivers, `.10` up |

`169.254.169.254` (metadata) sits on the emulator host too. There is no default
route anywhere: every namespace gets routes to exactly the subnets it may reach,
so nothing inside can reach out of the machine. Instances reach the services
subnet and metadata; with a serverless connector, the pod subnet as well. Pods
also route their cluster's Service range (`services_ipv4_cidr`) to the world:
there is no kube-proxy, so a Service VIP is only ever answered by the pod's own
sidecar, which captures the connection before it leaves (docs/worlds.md).

Names carry the run's prefix (`kw` + 6 hex): namespaces `<prefix>-world`,
`<prefix>-emu`, `<prefix>-c-<client>`, `<prefix>-i<n>` (instances),
`<prefix>-p-<pod>`. Links live only inside namespaces, so deleting the
namespaces deletes them.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

METADATA_IP = "169.254.169.254"
PREFIX_LENGTH = 8
GOOGLE_SERVICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("container", ("container.googleapis.com",)),
    ("cloudresourcemanager", ("cloudresourcemanager.googleapis.com",)),
    ("sts", ("sts.googleapis.com",)),
    ("iamcredentials", ("iamcredentials.googleapis.com",)),
    ("oauth2", ("www.googleapis.com", "oauth2.googleapis.com", "accounts.google.com")),
)
"""Endpoint-map key -> the hostnames it answers to (as emulator/services.py lists them)."""
METADATA_HOSTS = ("metadata.google.internal", "metadata")
ISTIOD_HOSTS = (
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "istiod.istio-system",
)
KUBERNETES_HOSTS = (
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "kubernetes.default",
    "kubernetes",
)
ISTIOD_PORT = 15012
RESOLV_CONF = (
    "# A world of namespaces has no DNS server: every name it knows is in /etc/hosts.\n"
    "# 127.0.0.1:53 refuses at once, so unknown names fail fast instead of timing out.\n"
    "nameserver 127.0.0.1\n"
    "options timeout:1 attempts:1\n"
)


def new_prefix() -> str:
    """A fresh run prefix: `kw` + 6 hex, short enough for every derived name."""
    return "kw" + secrets.token_hex(3)


@dataclass(frozen=True, slots=True)
class Route:
    destination: str
    """A network in CIDR form."""
    gateway: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """One namespace's place on the world bridge."""

    netns: str
    index: int
    """Names the world-side veth, `vh<index>`; the inside end is always `eth0`."""
    address: str
    prefixlen: int
    extra: tuple[str, ...] = ()
    """More addresses (/32) on `eth0`: the emulator host's service addresses."""
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    prefix: str
    network: ipaddress.IPv4Network
    subnets: dict[str, ipaddress.IPv4Network]
    world_netns: str
    emulator: Attachment
    google: dict[str, str]
    """Endpoint-map key -> address (each service listens on 443 there)."""
    run_frontend: str
    run_hosts: tuple[str, ...]
    cluster_endpoints: dict[str, str]
    """`project/location/name` -> the address of that cluster's API server (:443)."""
    istiods: dict[str, str] = field(default_factory=dict)
    """`project/location/name` of a mesh cluster -> the address of its istiod (:15012)."""
    clients: dict[str, Attachment] = field(default_factory=dict)
    pods: dict[str, Attachment] = field(default_factory=dict)

    @property
    def gateways(self) -> dict[str, str]:
        return {name: str(net.network_address + 1) for name, net in self.subnets.items()}

    def bind_map(self) -> dict[str, tuple[str, int]]:
        """Where each emulator service listens inside the emulator-host namespace."""
        bind = {key: (address, 443) for key, address in self.google.items()}
        bind["metadata"] = (METADATA_IP, 80)
        bind["run"] = (self.run_frontend, 443)
        for key, address in self.cluster_endpoints.items():
            bind[f"kube/{key}"] = (address, 443)
        for key, address in self.istiods.items():
            project, _, name = key.split("/")
            bind[f"istiod/{project}/{name}"] = (address, ISTIOD_PORT)
        return bind

    def hosts(self, cluster: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """/etc/hosts entries for a participant, inside cluster `project/location/name` or not.

        `istiod.istio-system.svc` names the participant's own cluster's istiod, else the
        first mesh cluster's; `kubernetes.default.svc` exists only inside a cluster.
        """
        entries: list[tuple[str, tuple[str, ...]]] = [(METADATA_IP, METADATA_HOSTS)]
        for key, names in GOOGLE_SERVICES:
            entries.append((self.google[key], names))
        if self.run_hosts:
            entries.append((self.run_frontend, self.run_hosts))
        istiod = self.istiods.get(cluster or "") or next(iter(self.istiods.values()), None)
        if istiod is not None:
            entries.append((istiod, ISTIOD_HOSTS))
        if cluster is not None and cluster in self.cluster_endpoints:
            entries.append((self.cluster_endpoints[cluster], KUBERNETES_HOSTS))
        return entries

    def instance(self, index: int, *, connector: bool) -> Attachment:
        """The attachment of the `index`-th instance started in this world (0-based)."""
        subnet = self.subnets["run"]
        address = _host(subnet, 10 + index)
        gateway = self.gateways["run"]
        routes = [
            Route(str(self.subnets["services"]), gateway),
            Route(f"{METADATA_IP}/32", gateway),
        ]
        if connector:
            routes.append(Route(str(self.subnets["pods"]), gateway))
        return Attachment(
            f"{self.prefix}-i{index}",
            100 + index,
            address,
            subnet.prefixlen,
            routes=tuple(routes),
        )


def _host(subnet: ipaddress.IPv4Network, offset: int) -> str:
    if offset >= subnet.num_addresses - 1:
        raise ValueError(f"{subnet} has no room for host number {offset}")
    return str(subnet.network_address + offset)


def make_plan(
    prefix: str,
    network: ipaddress.IPv4Network,
    *,
    run_hosts: tuple[str, ...] = (),
    clusters: tuple[str, ...] = (),
    clients: tuple[str, ...] = (),
    pods: tuple[str, ...] = (),
    meshes: tuple[str, ...] = (),
    pod_routes: dict[str, tuple[str, ...]] | None = None,
) -> Plan:
    """Lay out a world; pure and deterministic for the same inputs.

    `meshes` are the clusters (of `clusters`) that run an istiod; `pod_routes` adds
    destinations a pod routes to the world (its cluster's Service range).
    """
    if network.prefixlen > 22:
        raise ValueError(f"{network} is too small: a world needs at least a /22")
    subnets = dict(
        zip(("services", "run", "pods", "clients"), network.subnets(new_prefix=24), strict=False)
    )
    services = subnets["services"]
    gateways = {name: str(net.network_address + 1) for name, net in subnets.items()}
    google = {key: _host(services, 10 + i) for i, (key, _) in enumerate(GOOGLE_SERVICES)}
    run_frontend = _host(services, 20)
    cluster_endpoints = {name: _host(services, 30 + i) for i, name in enumerate(clusters)}
    istiods = {name: _host(services, 40 + i) for i, name in enumerate(meshes)}
    extra_routes = pod_routes or {}
    everything = Route(str(network), gateways["services"])
    emulator = Attachment(
        f"{prefix}-emu",
        1,
        _host(services, 2),
        services.prefixlen,
        extra=(
            METADATA_IP,
            *google.values(),
            run_frontend,
            *cluster_endpoints.values(),
            *istiods.values(),
        ),
        routes=(everything,),
    )

    def attach(
        kind: str, names: tuple[str, ...], first_index: int, tag: str
    ) -> dict[str, Attachment]:
        subnet, gateway = subnets[kind], gateways[kind]
        # Pods and test drivers reach every subnet (replies to instances included);
        # only instances are confined, as Cloud Run's are without a connector.
        routes = (Route(str(network), gateway), Route(f"{METADATA_IP}/32", gateway))
        return {
            name: Attachment(
                f"{prefix}-{tag}-{name}",
                first_index + i,
                _host(subnet, 10 + i),
                subnet.prefixlen,
                routes=routes + tuple(Route(d, gateway) for d in extra_routes.get(name, ())),
            )
            for i, name in enumerate(names)
        }

    return Plan(
        prefix=prefix,
        network=network,
        subnets=subnets,
        world_netns=f"{prefix}-world",
        emulator=emulator,
        google=google,
        run_frontend=run_frontend,
        run_hosts=run_hosts,
        cluster_endpoints=cluster_endpoints,
        istiods=istiods,
        clients=attach("clients", clients, 10, "c"),
        pods=attach("pods", pods, 400, "p"),
    )


def hosts_file(
    plan: Plan,
    *,
    own_name: str,
    own_address: str,
    cluster: str | None = None,
    extra: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> str:
    """`/etc/netns/<ns>/hosts` for one participant; `extra` adds entries (its Services).

    Every name appears once: hosts.conf's `multi on` would otherwise return both.
    """
    lines = [
        "# Written by the krun scenario harness for this world; removed with it.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{own_address}\t{own_name}",
    ]
    seen = {"localhost", own_name}
    for address, names in (*plan.hosts(cluster), *extra):
        fresh = [n for n in names if n not in seen]
        seen.update(fresh)
        if fresh:
            lines.append(f"{address}\t{' '.join(fresh)}")
    return "\n".join(lines) + "\n"
