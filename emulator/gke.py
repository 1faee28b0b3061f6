"""The GKE container API v1, over REST JSON and gRPC on one listener, as Google serves it.

REST (what gcloud and a Python port use):

* `GET /v1/projects/{P}/locations/{L}/clusters` (`L` may be `-`: every location)
* `GET /v1/projects/{P}/locations/{L}/clusters/{C}`
* `GET /v1/projects/{P}/zones/{Z}/clusters[/{C}]`, the older zonal forms

gRPC (what the original Go krun uses): `google.container.v1.ClusterManager`
`ListClusters` (`parent`, or the deprecated `project_id` + `zone`) and
`GetCluster` (`name`, or `project_id` + `zone` + `cluster_id`).

A world `Cluster` is rendered once into the `google.container.v1.Cluster` message
of the installed `google-cloud-container` package; REST serves its proto JSON and
gRPC its bytes, so both carry the same data.

Names in gRPC requests are read the way GKE reads them: segment by segment,
with the deprecated fields filling what the name leaves out. GKE accepts
`projects/P/locations/L/cluster/C` (singular): the original krun sends exactly
that and its integration test passed against real GKE, so we accept it too.

Checks run in Google's order: credentials (401), request shape (400), the
consumer project (403 `CONSUMER_INVALID`, or 400 for a bad `x-goog-user-project`),
IAM on the project (403), the location (400), then the lookup (404).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud.container_v1 import types as gke

from emulator.asgi import ASGIApp, Request, Response, Router, json_api_app
from emulator.errors import WorldLookupError
from emulator.googleapi import ApiError, authenticate, check_quota_project, consumer_invalid
from emulator.grpc_asgi import GrpcAbortError, UnaryMethod, is_grpc
from emulator.grpc_asgi import dispatch as grpc_dispatch
from emulator.world import Cluster, Principal, World, region_of, stable_hex

HOSTNAMES = ("container.googleapis.com",)
SERVICE = "container.googleapis.com"
GRPC_SERVICE = "google.container.v1.ClusterManager"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

_ERROR_SCOPE_KEY = "emulator.api_error"


# Resource names (pure).

_SEGMENT = "[^/]+"
_LOCATION = re.compile(r"[a-z]+(?:-[a-z]+)*[0-9]+(?:-[a-z])?\Z")


@dataclass(frozen=True, slots=True)
class ParentRef:
    """A list request's scope: a project and a location (`-` for all)."""

    project: str
    location: str
    collection: str = "locations"
    """How the caller spelled the location collection: `locations` or `zones`."""

    @property
    def path(self) -> str:
        return f"projects/{self.project}/{self.collection}/{self.location}"


@dataclass(frozen=True, slots=True)
class ClusterRef:
    """One cluster, as a get request names it."""

    project: str
    location: str
    cluster: str
    collection: str = "locations"

    @property
    def path(self) -> str:
        return f"projects/{self.project}/{self.collection}/{self.location}/clusters/{self.cluster}"


_KEYWORDS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("project", "projects", frozenset({"projects"})),
    ("location", "locations", frozenset({"locations", "zones"})),
    # The singular is what the original krun sends; GKE takes it.
    ("cluster", "clusters", frozenset({"clusters", "cluster"})),
)
_DEPRECATED = {"project": "project_id", "location": "zone", "cluster": "cluster_id"}


def _split_name(value: str, field_name: str, depth: int) -> tuple[dict[str, str], str]:
    """The labelled parts of a name and its location collection; ValueError when malformed.

    A value without `/` names nothing (GKE then wants the deprecated fields);
    otherwise it is `keyword/value` pairs in the fixed order, at most `depth` of them.
    """
    parts: dict[str, str] = {}
    collection = "locations"
    if "/" not in value:
        return parts, collection
    segments = value.split("/")
    if len(segments) % 2 or len(segments) > 2 * depth:
        raise ValueError(_malformed(field_name, value, depth))
    for index in range(0, len(segments), 2):
        keyword, part = segments[index], segments[index + 1]
        label, _, accepted = _KEYWORDS[index // 2]
        if keyword not in accepted or not part:
            raise ValueError(_malformed(field_name, value, depth))
        if label == "location":
            collection = keyword
        parts[label] = part
    return parts, collection


def _malformed(field_name: str, value: str, depth: int) -> str:
    shape = "/".join(f"{canonical}/*" for _, canonical, _ in _KEYWORDS[:depth])
    return f'Invalid value for field "{field_name}": "{value}". Must be of the form "{shape}".'


def _resolve(
    value: str, field_name: str, depth: int, deprecated: dict[str, str]
) -> tuple[list[str], str]:
    parts, collection = _split_name(value, field_name, depth)
    resolved: list[str] = []
    for label, _, _ in _KEYWORDS[:depth]:
        part = parts.get(label) or deprecated.get(label, "")
        if not part:
            raise ValueError(
                f"'{_DEPRECATED[label]}' or {label} in '{field_name}' must be specified."
            )
        if "/" in part:
            raise ValueError(f'Invalid value for field "{_DEPRECATED[label]}": "{part}".')
        resolved.append(part)
    if "location" not in parts and deprecated.get("location"):
        collection = "zones"
    return resolved, collection


def parse_parent(parent: str, *, project_id: str = "", zone: str = "") -> ParentRef:
    """A ListClusters scope from `parent` and the deprecated fields; ValueError names the field."""
    (project, location), collection = _resolve(
        parent, "parent", 2, {"project": project_id, "location": zone}
    )
    return ParentRef(project, location, collection)


def parse_cluster_name(
    name: str, *, project_id: str = "", zone: str = "", cluster_id: str = ""
) -> ClusterRef:
    """A GetCluster target from `name` and the deprecated fields; ValueError names the field."""
    (project, location, cluster), collection = _resolve(
        name, "name", 3, {"project": project_id, "location": zone, "cluster": cluster_id}
    )
    return ClusterRef(project, location, cluster, collection)


def location_exists(location: str, known: Iterable[str] = ()) -> bool:
    """Whether GKE would know the location: a region or zone name, or one the world uses."""
    return location in set(known) or _LOCATION.match(location) is not None


# Rendering a world cluster (pure).

_NODE_SCOPES = (
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring",
    "https://www.googleapis.com/auth/service.management.readonly",
    "https://www.googleapis.com/auth/servicecontrol",
    "https://www.googleapis.com/auth/trace.append",
)
_REGION_ZONES = {"europe-west1": "bcd", "us-east1": "bcd"}
"""Regions whose zones are not a, b and c (a regional cluster spreads nodes over three)."""
_EMPTY_LABELS_FINGERPRINT = "a9dc16a7"
"""What GKE reports as the label fingerprint of a cluster without labels."""
NODES_PER_ZONE = 3


def node_zones(location: str) -> list[str]:
    """The zones a cluster's nodes run in: its zone, or three zones of its region."""
    region = region_of(location)
    if region != location:
        return [location]
    return [f"{region}-{letter}" for letter in _REGION_ZONES.get(region, "abc")]


def cluster_self_link(cluster: Cluster) -> str:
    """GKE's selfLink: `zones/Z` for a zonal cluster, `locations/R` for a regional one."""
    collection = "zones" if cluster.zonal else "locations"
    return (
        f"https://container.googleapis.com/v1/projects/{cluster.project_id}"
        f"/{collection}/{cluster.location}/clusters/{cluster.name}"
    )


def cluster_id(cluster: Cluster) -> str:
    """The cluster's 64-hex id (the metadata `cluster-uid` is a prefix of it)."""
    return stable_hex(cluster.self_link, 64)


def endpoint_of(cluster: Cluster) -> str:
    """The `endpoint` field: GKE's bare IP; a port only when the emulated API server is not on 443.

    Clients build `https://{endpoint}`, so a non-default port has to travel here.
    """
    if cluster.endpoint_port == 443:
        return cluster.endpoint
    host = f"[{cluster.endpoint}]" if ":" in cluster.endpoint else cluster.endpoint
    return f"{host}:{cluster.endpoint_port}"


def label_fingerprint(labels: dict[str, str]) -> str:
    if not labels:
        return _EMPTY_LABELS_FINGERPRINT
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:8]


def _etag(seed: str) -> str:
    digest = stable_hex(seed, 32)
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def _node_config() -> gke.NodeConfig:
    return gke.NodeConfig(
        machine_type="e2-medium",
        disk_size_gb=100,
        oauth_scopes=list(_NODE_SCOPES),
        service_account="default",
        metadata={"disable-legacy-endpoints": "true"},
        image_type="COS_CONTAINERD",
        disk_type="pd-balanced",
        workload_metadata_config=gke.WorkloadMetadataConfig(
            mode=gke.WorkloadMetadataConfig.Mode.GKE_METADATA
        ),
        shielded_instance_config=gke.ShieldedInstanceConfig(enable_integrity_monitoring=True),
    )


def _status(value: str) -> gke.Cluster.Status:
    members = gke.Cluster.Status.__members__
    status: gke.Cluster.Status = members.get(value, gke.Cluster.Status.STATUS_UNSPECIFIED)
    return status


def render_cluster(cluster: Cluster) -> gke.Cluster:
    """The `google.container.v1.Cluster` GKE would return for this world cluster."""
    uid = cluster_id(cluster)
    link = cluster_self_link(cluster)
    zones = node_zones(cluster.location)
    region = region_of(cluster.location)
    project = cluster.project_id
    group_urls = [
        f"https://www.googleapis.com/compute/v1/projects/{project}/zones/{z}"
        f"/instanceGroupManagers/gke-{cluster.name[:18]}-default-pool-{stable_hex(uid + z, 8)}-grp"
        for z in zones
    ]
    status = _status(cluster.status)
    pods_range = f"gke-{cluster.name[:24]}-pods-{uid[:8]}"
    pool = gke.NodePool(
        name="default-pool",
        config=_node_config(),
        initial_node_count=NODES_PER_ZONE if cluster.zonal else 1,
        locations=zones,
        self_link=f"{link}/nodePools/default-pool",
        version=cluster.master_version,
        instance_group_urls=group_urls,
        status=gke.NodePool.Status.RUNNING
        if status == gke.Cluster.Status.RUNNING
        else gke.NodePool.Status.PROVISIONING,
        management=gke.NodeManagement(auto_upgrade=True, auto_repair=True),
        max_pods_constraint=gke.MaxPodsConstraint(max_pods_per_node=110),
        pod_ipv4_cidr_size=24,
        network_config=gke.NodeNetworkConfig(
            pod_range=pods_range, pod_ipv4_cidr_block=cluster.cluster_ipv4_cidr
        ),
        upgrade_settings=gke.NodePool.UpgradeSettings(
            max_surge=1, strategy=gke.NodePoolUpdateStrategy.SURGE
        ),
        etag=_etag(f"{uid}/default-pool/{cluster.master_version}"),
    )
    labels = dict(cluster.resource_labels)
    return gke.Cluster(
        name=cluster.name,
        node_config=_node_config(),
        master_auth=gke.MasterAuth(
            cluster_ca_certificate=base64.b64encode(cluster.ca_pem.encode()).decode(),
            client_certificate_config=gke.ClientCertificateConfig(),
        ),
        logging_service="logging.googleapis.com/kubernetes",
        monitoring_service="monitoring.googleapis.com/kubernetes",
        network=cluster.network,
        cluster_ipv4_cidr=cluster.cluster_ipv4_cidr,
        subnetwork=cluster.subnetwork,
        node_pools=[pool],
        locations=zones,
        resource_labels=labels,
        label_fingerprint=label_fingerprint(labels),
        legacy_abac=gke.LegacyAbac(),
        ip_allocation_policy=gke.IPAllocationPolicy(
            use_ip_aliases=True,
            cluster_ipv4_cidr=cluster.cluster_ipv4_cidr,
            services_ipv4_cidr=cluster.services_ipv4_cidr,
            cluster_secondary_range_name=pods_range,
            cluster_ipv4_cidr_block=cluster.cluster_ipv4_cidr,
            services_ipv4_cidr_block=cluster.services_ipv4_cidr,
            stack_type=gke.StackType.IPV4,
        ),
        maintenance_policy=gke.MaintenancePolicy(resource_version="e3b0c442"),
        network_config=gke.NetworkConfig(
            network=f"projects/{project}/global/networks/{cluster.network}",
            subnetwork=f"projects/{project}/regions/{region}/subnetworks/{cluster.subnetwork}",
        ),
        default_max_pods_constraint=gke.MaxPodsConstraint(max_pods_per_node=110),
        database_encryption=gke.DatabaseEncryption(state=gke.DatabaseEncryption.State.DECRYPTED),
        shielded_nodes=gke.ShieldedNodes(enabled=True),
        release_channel=gke.ReleaseChannel(channel=gke.ReleaseChannel.Channel.REGULAR),
        workload_identity_config=gke.WorkloadIdentityConfig(workload_pool=cluster.workload_pool),
        self_link=link,
        zone=cluster.location,
        endpoint=endpoint_of(cluster),
        initial_cluster_version=cluster.master_version,
        current_master_version=cluster.master_version,
        current_node_version=cluster.master_version,
        create_time=cluster.create_time,
        status=status,
        services_ipv4_cidr=cluster.services_ipv4_cidr,
        instance_group_urls=group_urls,
        current_node_count=NODES_PER_ZONE * (1 if cluster.zonal else len(zones)),
        location=cluster.location,
        id=uid,
        etag=_etag(f"{uid}/{cluster.status}/{cluster.master_version}/{sorted(labels.items())}"),
    )


def to_json(message: Any) -> dict[str, Any]:
    """Proto JSON as Google's REST front end writes it: camelCase, enum names, no defaults."""
    result: dict[str, Any] = type(message).to_dict(
        message,
        use_integers_for_enums=False,
        preserving_proto_field_name=False,
        always_print_fields_with_no_presence=False,
    )
    return result


# The service (I/O shell).


class ClusterManager:
    """ListClusters and GetCluster against the world, transport-neutral."""

    def __init__(self, world: World) -> None:
        self.world = world

    def authenticate(self, request: Request, method: str) -> Principal:
        return authenticate(
            self.world,
            request,
            method=f"{GRPC_SERVICE}.{method}",
            service=SERVICE,
            scopes=(CLOUD_PLATFORM,),
        )

    def _authorize(
        self, request: Request, principal: Principal, project: str, permission: str, resource: str
    ) -> None:
        quota = check_quota_project(self.world, request)
        if quota is None:
            try:
                self.world.project(project)
            except WorldLookupError:
                raise consumer_invalid(project, SERVICE) from None
        if not self.world.allowed(principal, permission, project_id=project):
            raise ApiError(403, f'Required "{permission}" permission(s) for "{resource}".')

    def _check_location(self, location: str) -> None:
        known = (c.location for c in self.world.all_clusters())
        if location != "-" and not location_exists(location, known):
            raise ApiError(400, f'Location "{location}" does not exist.')

    def list_clusters(
        self, request: Request, principal: Principal, parent: ParentRef
    ) -> gke.ListClustersResponse:
        self._authorize(
            request,
            principal,
            parent.project,
            "container.clusters.list",
            f"projects/{parent.project}",
        )
        self._check_location(parent.location)
        clusters = self.world.clusters(parent.project, parent.location)
        return gke.ListClustersResponse(clusters=[render_cluster(c) for c in clusters])

    def get_cluster(self, request: Request, principal: Principal, ref: ClusterRef) -> gke.Cluster:
        self._authorize(request, principal, ref.project, "container.clusters.get", ref.path)
        self._check_location(ref.location)
        try:
            cluster = self.world.cluster(ref.project, ref.location, ref.cluster)
        except WorldLookupError:
            raise ApiError(404, f"Not found: {ref.path}.") from None
        return render_cluster(cluster)


GrpcHandler = Callable[[Any, Request], Awaitable[Any]]


def _grpc_method(request_type: Any, reply_type: Any, handler: GrpcHandler) -> UnaryMethod:
    async def run(message: Any, request: Request) -> Any:
        try:
            return await handler(message, request)
        except ApiError as exc:
            # dispatch() writes grpc-status and grpc-message; the details trailer is added after.
            request.scope[_ERROR_SCOPE_KEY] = exc
            raise GrpcAbortError(exc.grpc_code, exc.message) from exc
        except GrpcAbortError:
            raise
        except Exception as exc:  # the boundary: a bug becomes INTERNAL, not a dropped stream
            message_text = f"internal error: {type(exc).__name__}: {exc}"
            raise GrpcAbortError(grpc.StatusCode.INTERNAL, message_text) from exc

    return UnaryMethod(request_type.deserialize, reply_type.serialize, run)


async def serve_grpc(methods: dict[str, UnaryMethod], request: Request) -> Response:
    """Dispatch one gRPC call, adding `grpc-status-details-bin` when an ApiError ended it."""
    response = await grpc_dispatch(methods, request)
    error = request.scope.get(_ERROR_SCOPE_KEY)
    if isinstance(error, ApiError) and response.trailers is not None:
        encoded = base64.b64encode(error.grpc_status_details()).decode().rstrip("=")
        response.trailers.append(("grpc-status-details-bin", encoded))
    return response


class _ApiRouter(Router):
    """REST routes, with gRPC requests (by content type) diverted to the unary methods."""

    def __init__(self, methods: dict[str, UnaryMethod]) -> None:
        super().__init__()
        self.methods = methods

    async def dispatch(self, request: Request) -> Response | None:
        if is_grpc(request):
            return await serve_grpc(self.methods, request)
        return await super().dispatch(request)


def create_app(world: World) -> ASGIApp:
    manager = ClusterManager(world)

    async def grpc_list(message: gke.ListClustersRequest, request: Request) -> Any:
        principal = manager.authenticate(request, "ListClusters")
        try:
            parent = parse_parent(message.parent, project_id=message.project_id, zone=message.zone)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return manager.list_clusters(request, principal, parent)

    async def grpc_get(message: gke.GetClusterRequest, request: Request) -> Any:
        principal = manager.authenticate(request, "GetCluster")
        try:
            ref = parse_cluster_name(
                message.name,
                project_id=message.project_id,
                zone=message.zone,
                cluster_id=message.cluster_id,
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return manager.get_cluster(request, principal, ref)

    methods = {
        f"/{GRPC_SERVICE}/ListClusters": _grpc_method(
            gke.ListClustersRequest, gke.ListClustersResponse, grpc_list
        ),
        f"/{GRPC_SERVICE}/GetCluster": _grpc_method(gke.GetClusterRequest, gke.Cluster, grpc_get),
    }
    router = _ApiRouter(methods)

    async def rest_list(request: Request, project: str, collection: str, location: str) -> Response:
        try:
            principal = manager.authenticate(request, "ListClusters")
            reply = manager.list_clusters(
                request, principal, ParentRef(project, location, collection)
            )
        except ApiError as exc:
            return exc.rest_response()
        return Response.json(to_json(reply))

    async def rest_get(
        request: Request, project: str, collection: str, location: str, cluster: str
    ) -> Response:
        try:
            principal = manager.authenticate(request, "GetCluster")
            reply = manager.get_cluster(
                request, principal, ClusterRef(project, location, cluster, collection)
            )
        except ApiError as exc:
            return exc.rest_response()
        return Response.json(to_json(reply))

    scope = (
        rf"/v1/projects/(?P<project>{_SEGMENT})"
        rf"/(?P<collection>locations|zones)/(?P<location>{_SEGMENT})"
    )
    router.add("GET", scope + "/clusters", rest_list)
    router.add("GET", scope + rf"/clusters/(?P<cluster>{_SEGMENT})", rest_get)
    return json_api_app(router, service="container")
