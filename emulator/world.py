"""The world: one in-memory state shared by every emulated service.

A world holds projects (with IAM policies, service accounts, GKE clusters and
Cloud Run services) and instances, the machines that call the metadata server
(a VM, a GKE node or pod, a Cloud Run instance). Services read it; the admin
API and tests change it, and `changed()` wakes metadata `wait_for_change`
callers.

Time comes from `World.clock`, so tests can move it forward to expire tokens.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.changes import Changes
from emulator.errors import WorldLookupError
from emulator.roles import permits

if TYPE_CHECKING:
    import asyncio

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from emulator.faults import FaultTable
    from emulator.istio.model import MeshModel
    from emulator.kube.cluster import KubeCluster
    from emulator.pki import WorldPKI
    from emulator.tokens import TokenAuthority

DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class Flavour(enum.StrEnum):
    """Which metadata server a caller sees; the value is the world-file spelling."""

    VM = "vm"
    GKE = "gke"
    SERVERLESS = "cloudrun"

    @property
    def server_header(self) -> str:
        """The `Server` header the real metadata server of this kind sends."""
        return _SERVER_HEADERS[self]


_SERVER_HEADERS = {
    Flavour.VM: "Metadata Server for VM",
    Flavour.GKE: "GKE Metadata Server",
    Flavour.SERVERLESS: "Metadata Server for Serverless",
}


def stable_number(seed: str, digits: int) -> int:
    """A number of exactly `digits` digits derived from `seed`, stable across runs."""
    value: int = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:16], "big")
    low = int(10 ** (digits - 1))
    return low + value % (9 * low)


def stable_hex(seed: str, length: int) -> str:
    """`length` lowercase hex characters derived from `seed`."""
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def region_of(zone: str) -> str:
    """`us-central1-a` -> `us-central1`; a region passes through unchanged."""
    head, _, tail = zone.rpartition("-")
    return head if head and len(tail) == 1 else zone


def region_code(region: str) -> str:
    """The short region code in `*.a.run.app` hosts: `us-central1` -> `uc`."""
    parts = [p for p in region.split("-") if p]
    return "".join(p[0] for p in parts[:2])


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an access token speaks for, and every IAM member string that matches it."""

    subject: str
    """`serviceAccount:EMAIL`, `user:EMAIL` or a `principal://` federated subject."""
    members: frozenset[str]
    email: str | None = None
    """The Google service account or user email, when the principal has one."""

    @classmethod
    def for_email(cls, email: str, *, user: bool = False) -> Principal:
        subject = f"{'user' if user else 'serviceAccount'}:{email}"
        return cls(subject, frozenset({subject, "allAuthenticatedUsers", "allUsers"}), email)

    @classmethod
    def for_workload(cls, project_number: int, pool: str, namespace: str, ksa: str) -> Principal:
        """A Kubernetes service account federated through a workload identity pool."""
        subject = (
            f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
            f"workloadIdentityPools/{pool}/subject/ns/{namespace}/sa/{ksa}"
        )
        legacy = f"serviceAccount:{pool}[{namespace}/{ksa}]"
        return cls(subject, frozenset({subject, legacy, "allAuthenticatedUsers", "allUsers"}))


@dataclass(slots=True)
class ServiceAccount:
    email: str
    project_id: str
    unique_id: str
    display_name: str = ""
    disabled: bool = False
    iam: dict[str, set[str]] = field(default_factory=dict)
    """The service account's own IAM policy: role -> members."""

    @property
    def member(self) -> str:
        return f"serviceAccount:{self.email}"


@dataclass(slots=True)
class Cluster:
    project_id: str
    name: str
    location: str
    resource_labels: dict[str, str] = field(default_factory=dict)
    status: str = "RUNNING"
    master_version: str = "1.30.5-gke.1014001"
    endpoint: str = "127.0.0.1"
    """The API server's address as GKE reports it: an IP, no scheme, no port."""
    endpoint_port: int = 443
    network: str = "default"
    subnetwork: str = "default"
    cluster_ipv4_cidr: str = "10.8.0.0/14"
    services_ipv4_cidr: str = "10.12.0.0/20"
    create_time: str = "2026-01-01T00:00:00+00:00"
    ca_pem: str = ""
    """PEM of the CA that signs the API server's certificate (the world CA)."""
    sa_signing_key: RSAPrivateKey | None = None
    """Signs and verifies this cluster's Kubernetes service-account tokens."""
    kube: KubeCluster | None = field(default=None, repr=False, compare=False)
    """The emulated API server's objects; `emulator.kube.kube_cluster` makes it on first use."""
    mesh: MeshModel | None = field(default=None, repr=False, compare=False)
    """What this cluster's istiod serves; `emulator.istio.server.mesh_model` makes it."""
    manifests: list[dict[str, Any]] = field(default_factory=list, repr=False, compare=False)
    """Objects the world file seeds the API server with, applied as admin when it is built."""

    @property
    def self_link(self) -> str:
        return (
            f"https://container.googleapis.com/v1/projects/{self.project_id}"
            f"/locations/{self.location}/clusters/{self.name}"
        )

    @property
    def issuer(self) -> str:
        """The `iss` of this cluster's service-account tokens, as on GKE."""
        return self.self_link

    @property
    def workload_pool(self) -> str:
        return f"{self.project_id}.svc.id.goog"

    @property
    def zonal(self) -> bool:
        return region_of(self.location) != self.location


@dataclass(slots=True)
class RunService:
    project_id: str
    name: str
    region: str
    service_account: str
    invokers: set[str] = field(default_factory=set)
    """Members holding roles/run.invoker on the service (`allUsers` makes it public)."""
    revision: str = ""
    container_port: int = 8080
    """Where the front end sends requests: 8080 (`PORT`), or 15009 for mesh (HBONE) services."""
    min_instances: int = 0
    max_instances: int = 100
    concurrency: int = 80
    """Requests one instance takes at once before the front end starts another."""

    @property
    def url(self) -> str:
        digest = stable_hex(f"{self.project_id}/{self.region}/{self.name}", 10)
        return f"https://{self.name}-{digest}-{region_code(self.region)}.a.run.app"


@dataclass(slots=True)
class Instance:
    """A metadata-server caller: a VM, a GKE node or pod, or a Cloud Run instance."""

    name: str
    flavour: Flavour
    project_id: str
    zone: str
    id: str
    service_account: str | None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    attributes: dict[str, str] = field(default_factory=dict)
    address: str | None = None
    """Source address that identifies this caller inside a world of namespaces."""
    hostname: str = ""
    cluster: str | None = None
    service: str | None = None
    network_ip: str = "10.128.0.2"

    @property
    def region(self) -> str:
        return region_of(self.zone)


@dataclass(slots=True)
class Project:
    id: str
    number: int
    labels: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    """Project-wide metadata attributes."""
    iam: dict[str, set[str]] = field(default_factory=dict)
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    clusters: list[Cluster] = field(default_factory=list)
    run_services: list[RunService] = field(default_factory=list)
    name: str = ""
    create_time: str = "2026-01-01T00:00:00.000Z"


@dataclass(slots=True)
class World:
    name: str
    projects: dict[str, Project]
    instances: dict[str, Instance]
    pki: WorldPKI
    tokens: TokenAuthority
    faults: FaultTable
    clock: Callable[[], float] = time.time
    token_lifetime: int = 3600
    _changes: Changes = field(default_factory=Changes)

    # Lookups. Each raises WorldLookupError naming what was missing.

    def project(self, project: str) -> Project:
        """A project by id or by number (both are accepted where Google accepts both)."""
        found = self.projects.get(project)
        if found is None and project.isdigit():
            found = next((p for p in self.projects.values() if str(p.number) == project), None)
        if found is None:
            raise WorldLookupError(f"project {project!r} does not exist")
        return found

    def service_accounts(self) -> Iterator[ServiceAccount]:
        for project in self.projects.values():
            yield from project.service_accounts.values()

    def service_account(self, email_or_id: str) -> ServiceAccount:
        for account in self.service_accounts():
            if email_or_id in (account.email, account.unique_id):
                return account
        raise WorldLookupError(f"service account {email_or_id!r} does not exist")

    def clusters(self, project_id: str, location: str = "-") -> list[Cluster]:
        """Clusters of a project in one location, or in all with `-`."""
        project = self.project(project_id)
        return [c for c in project.clusters if location in ("-", c.location)]

    def cluster(self, project_id: str, location: str, name: str) -> Cluster:
        for cluster in self.clusters(project_id, location):
            if cluster.name == name:
                return cluster
        raise WorldLookupError(
            f"cluster projects/{project_id}/locations/{location}/clusters/{name} does not exist"
        )

    def all_clusters(self) -> Iterator[Cluster]:
        for project in self.projects.values():
            yield from project.clusters

    def run_services(self) -> Iterator[RunService]:
        for project in self.projects.values():
            yield from project.run_services

    def instance(self, name: str) -> Instance:
        found = self.instances.get(name)
        if found is None:
            raise WorldLookupError(f"instance {name!r} does not exist")
        return found

    def instance_by_address(self, address: str) -> Instance | None:
        return next((i for i in self.instances.values() if i.address == address), None)

    # IAM.

    def allowed(self, principal: Principal, permission: str, *, project_id: str) -> bool:
        """Whether the principal holds `permission` through the project's IAM policy."""
        try:
            project = self.project(project_id)
        except WorldLookupError:
            return False
        return _policy_allows(project.iam, principal, permission)

    def allowed_on_account(
        self, principal: Principal, permission: str, account: ServiceAccount
    ) -> bool:
        """Through the account's own policy or its project's (as IAM inherits)."""
        return _policy_allows(account.iam, principal, permission) or self.allowed(
            principal, permission, project_id=account.project_id
        )

    # Change notification, for metadata wait_for_change.

    @property
    def generation(self) -> int:
        return self._changes.generation

    def changed(self) -> None:
        """Record a change and wake every waiter, whichever event loop it waits in."""
        self._changes.bump()

    def subscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Set `event` (in `loop`) at the next `changed()`."""
        self._changes.subscribe(loop, event)

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """Forget a subscription whose waiter timed out or went away."""
        self._changes.unsubscribe(loop, event)

    @property
    def waiting(self) -> int:
        """Subscriptions the next `changed()` will wake (tests wait for a waiter to exist)."""
        return self._changes.waiting

    def set_attribute(self, instance: str, key: str, value: str | None) -> None:
        """Set an instance's metadata attribute, or delete it when `value` is None."""
        target = self.instance(instance).attributes
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
        self.changed()


def _policy_allows(policy: dict[str, set[str]], principal: Principal, permission: str) -> bool:
    return any(
        permits(role, permission) and not members.isdisjoint(principal.members)
        for role, members in policy.items()
    )
