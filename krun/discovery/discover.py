"""Discovery in order, recording each decision and its source as it goes.

Steps (the names `krun explain` reports when one fails):

1. `mesh-env`: with `MESH=file://` or `https://`, load the mesh-env document;
2. `kubeconfig`: a kubeconfig or the in-cluster files, when there are any (`krun.kube.config`);
3. `metadata`: the platform, projects, account, region and an access token, concurrently;
4. `project`: the config project (MESH, PROJECT_ID, a `gke_` kubeconfig context, mesh-env,
   metadata) and the workload's;
5. `gke`: the config cluster, fetched by name or selected from a list (not fetched when a
   kubeconfig or in-cluster access already names it);
6. `kubernetes`: the API server's client; then `mesh-env` again: ConfigMap
   `istio-system/mesh-env` (404 is an empty map, as the original; 403 names the grant);
7. `project-number`, `namespace`, `name`, `trust-domain`: see `naming`; Resource Manager is
   read only when a rule needs it, and a denial there only skips the rule that needed it;
8. `control-plane`: XDS and CA addresses.

A mesh-env map obtained elsewhere can be passed in as `mesh_env` (the ConfigMap is then
not read).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from krun import env
from krun.config import Settings
from krun.decisions import Decision, Source
from krun.discovery import naming
from krun.discovery.addresses import Addresses, select_addresses
from krun.discovery.gke import ClusterInfo, GkeClient, quota_project, select_cluster
from krun.discovery.metadata import InstanceInfo, MetadataClient, Platform
from krun.errors import ConfigError, DiscoveryError
from krun.http import HttpClient
from krun.identity.google import MetadataTokens
from krun.kube.client import KubeClient
from krun.kube.config import (
    IN_CLUSTER_DIR,
    KubeAccess,
    from_gke,
    in_cluster,
    kubeconfig_path,
    parse_kubeconfig,
)
from krun.log import LOGGER
from krun.meshenv import layered, parse_document
from krun.meshurl import ClusterMesh, MeshEnvFile, MeshEnvUrl, TrafficDirector

if TYPE_CHECKING:
    from krun.discovery.crm import ProjectInfo

_LOGGED = ("platform", "config_project", "cluster", "namespace", "name", "trust_domain")
MESH_ENV_NAMESPACE = "istio-system"
MESH_ENV_NAME = "mesh-env"
AUTOCONF_GRANT = (
    "get on configmaps/mesh-env in istio-system (Role istio-autoconf bound to "
    "system:authenticated: manifests/hgate/istio-system-discovery-rbac.yaml)"
)


@dataclass
class Discovery:
    """Everything decided so far; a failed discovery keeps what it found before the failure."""

    step: str = "settings"
    decisions: dict[str, Decision[Any]] = field(default_factory=dict)
    instance: InstanceInfo | None = None
    cluster: ClusterInfo | None = None
    mesh_env: dict[str, str] | None = None
    mesh_env_why: str = "not loaded"
    addresses: Addresses | None = None
    kube_access: KubeAccess | None = None
    kube: KubeClient | None = None
    google: MetadataTokens | None = None
    """The instance's Google tokens (metadata server), when there is one."""
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        decision = self.decisions.get(key)
        return None if decision is None else decision.value

    def decide(self, key: str, decision: Decision[Any]) -> Any:
        self.decisions[key] = decision
        return decision.value


class _Timer:
    def __init__(self, discovery: Discovery, step: str) -> None:
        self.discovery = discovery
        self.step = step

    def __enter__(self) -> None:
        self.discovery.step = self.step
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = round((time.perf_counter() - self.start) * 1000, 2)
        self.discovery.timings[self.step] = self.discovery.timings.get(self.step, 0) + elapsed


def discover(
    settings: Settings,
    http: HttpClient,
    *,
    mesh_env: Mapping[str, str] | None = None,
    into: Discovery | None = None,
    sleep: Callable[[float], None] = time.sleep,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> Discovery:
    """Run every discovery step; DiscoveryError (or ConfigError) names the failing one."""
    d = into if into is not None else Discovery()
    if mesh_env is not None:
        d.mesh_env, d.mesh_env_why = dict(mesh_env), "given"
    with _Timer(d, "mesh-env"):
        _load_mesh_env(settings, http, d)
    with _Timer(d, "kubeconfig"):
        d.kube_access = _kube_access(settings, in_cluster_dir)
    with _Timer(d, "metadata"):
        instance = _metadata(settings, http, d)
    if isinstance(settings.mesh, TrafficDirector):
        return _traffic_director(settings, instance, d)
    with _Timer(d, "project"):
        config_project, workload_project = _projects(settings, instance, d)
    projects = _ProjectCache(settings, http, instance)
    with _Timer(d, "gke"):
        cluster = _cluster(settings, http, instance, config_project, workload_project, d, sleep)
    with _Timer(d, "kubernetes"):
        d.kube = _kube_client(cluster, instance, d)
    if d.mesh_env is None:
        with _Timer(d, "mesh-env"):
            _read_mesh_env(d.kube, d)
    with _Timer(d, "project-number"):
        _project_number(settings, instance, config_project, workload_project, projects, d)
    with _Timer(d, "namespace"):
        namespace = d.decide(
            "namespace",
            naming.derive_namespace(
                env_namespace=settings.namespace,
                mesh_namespace=settings.mesh.namespace
                if isinstance(settings.mesh, ClusterMesh)
                else None,
                email=instance.email,
                project_id=workload_project,
                project_labels=lambda: projects.labels(workload_project, d),
            ),
        )
    d.step = "name"
    d.decide(
        "name",
        naming.derive_name(
            env_name=settings.name,
            k_service=settings.k_service,
            gateway=settings.gateway,
            namespace=d.decisions["namespace"],
        ),
    )
    ksa = d.decide("service_account", naming.derive_service_account(settings.service_account))
    d.step = "trust-domain"
    trust_domain = d.decide(
        "trust_domain",
        naming.derive_trust_domain(
            env_value=settings.trust_domain,
            mesh_env=d.mesh_env,
            config_project=d.decisions["config_project"],
        ),
    )
    d.decide(
        "spiffe_id",
        Decision(
            naming.spiffe_id(trust_domain, namespace, ksa),
            Source.DEFAULT,
            "spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT",
        ),
    )
    d.decide(
        "cluster_url",
        Decision(cluster.url, Source.GKE, "the cluster's selfLink (its tokens' issuer)"),
    )
    d.step = "control-plane"
    d.addresses = select_addresses(settings, d.mesh_env)
    d.decide(
        "control_plane",
        Decision(str(d.addresses.kind), d.addresses.xds.source, d.addresses.xds.why),
    )
    d.decide("xds_address", d.addresses.xds)
    d.decide("ca_address", d.addresses.ca)
    d.step = "done"
    LOGGER.info(
        "discovered",
        extra={
            "fields": {
                "timings_ms": dict(d.timings),
                **{key: d.value(key) for key in _LOGGED},
            }
        },
    )
    return d


def _load_mesh_env(settings: Settings, http: HttpClient, d: Discovery) -> None:
    mesh = settings.mesh
    if isinstance(mesh, MeshEnvFile):
        try:
            text = Path(mesh.path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(env.MESH, f"cannot read {mesh.path}: {error.strerror}") from None
        d.mesh_env = parse_document(text, origin=mesh.path)
        d.mesh_env_why = f"MESH document {mesh.path}"
    elif isinstance(mesh, MeshEnvUrl):
        answer = http.request("GET", mesh.url, error=DiscoveryError)
        if answer.status != 200:
            raise DiscoveryError(
                f"mesh-env document {mesh.url} answered {answer.status}",
                url=mesh.url,
                status=answer.status,
            )
        d.mesh_env = parse_document(answer.body.decode("utf-8", "replace"), origin=mesh.url)
        d.mesh_env_why = f"MESH document {mesh.url}"


def _kube_access(settings: Settings, in_cluster_dir: Path) -> KubeAccess | None:
    """A kubeconfig, else in-cluster files, else None (discovery's GKE cluster decides)."""
    path = kubeconfig_path(settings)
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(env.KUBECONFIG, f"cannot read {path}: {error.strerror}") from None
        return parse_kubeconfig(text, origin=path, base=Path(path).parent)
    if settings.kubernetes_service_host:
        return in_cluster(settings, in_cluster_dir)
    return None


def _kube_client(cluster: ClusterInfo, instance: InstanceInfo, d: Discovery) -> KubeClient:
    access = d.kube_access
    if access is None:
        if not cluster.endpoint:
            raise DiscoveryError(
                f"GKE gave no endpoint for cluster {cluster.project}/{cluster.location}/"
                f"{cluster.name}: is it still being created?"
            )
        access = from_gke(
            cluster.endpoint, cluster.ca_pem, cluster=cluster.url, email=instance.email
        )
        d.kube_access = access
    source = {"gke": Source.GKE, "in-cluster": Source.ENV}.get(access.kind, Source.KUBECONFIG)
    d.decide("kubernetes_api", Decision(access.server, source, access.origin))
    google = d.google.access_token if d.google is not None else None
    return KubeClient(access, google_token=google)


def _read_mesh_env(kube: KubeClient, d: Discovery) -> None:
    """ConfigMap istio-system/mesh-env: 404 is an empty map (the original's rule)."""
    try:
        data = kube.config_map(MESH_ENV_NAMESPACE, MESH_ENV_NAME)
    except DiscoveryError as error:
        if error.status == 403:
            raise DiscoveryError(
                f"reading the mesh-env map was refused: {error}; the cluster must grant "
                f"{kube.who} {AUTOCONF_GRANT}",
                url=error.url,
                status=403,
            ) from None
        raise
    where = f"ConfigMap {MESH_ENV_NAMESPACE}/{MESH_ENV_NAME} of {kube.access.server}"
    if data is None:
        d.mesh_env, d.mesh_env_why = {}, f"{where} does not exist (404): an empty map"
    else:
        d.mesh_env, d.mesh_env_why = data, where


def _metadata(settings: Settings, http: HttpClient, d: Discovery) -> InstanceInfo:
    if settings.no_gce_check:
        instance = InstanceInfo(platform=Platform.NONE, why=f"{env.NO_GCE_CHECK} is set")
        d.instance = instance
        d.decide("platform", Decision(str(instance.platform), Source.ENV, instance.why))
        return instance
    host = settings.endpoints.metadata_host
    try:
        instance = MetadataClient(http, host).discover()
    except DiscoveryError as error:
        if error.status is None and not settings.endpoints.metadata_host_explicit:
            raise DiscoveryError(
                f"no metadata server at {host}: not on Google Cloud? ({error})",
                url=error.url,
            ) from None
        raise
    d.instance = instance
    if instance.token is not None:
        d.google = MetadataTokens(MetadataClient(http, host))
        d.google.seed(instance.token.token, instance.token.expires_at)
    d.decide("platform", Decision(str(instance.platform), Source.METADATA, instance.why))
    for key, value, why in (
        ("region", instance.region, "instance/region or instance/zone"),
        ("instance_id", instance.instance_id, "instance/id"),
        ("google_service_account", instance.email, "instance/service-accounts/default/email"),
    ):
        if value is not None:
            d.decide(key, Decision(value, Source.METADATA, why))
    return instance


def _projects(settings: Settings, instance: InstanceInfo, d: Discovery) -> tuple[str, str | None]:
    context = d.kube_access.gke if d.kube_access is not None else None
    workload: Decision[str] | None = None
    if instance.project_id:
        workload = Decision(instance.project_id, Source.METADATA, "project/project-id")
    elif settings.project_id:
        workload = Decision(settings.project_id, Source.ENV, env.PROJECT_ID)
    config: Decision[str] | None = None
    if isinstance(settings.mesh, ClusterMesh):
        config = Decision(settings.mesh.project, Source.ENV, "MESH")
    elif settings.project_id:
        config = Decision(settings.project_id, Source.ENV, env.PROJECT_ID)
    elif context is not None:
        config = Decision(context[0], Source.KUBECONFIG, "the gke_PROJECT_LOCATION_CLUSTER context")
    elif (from_mesh_env := layered(env.PROJECT_ID, None, d.mesh_env)) is not None:
        config = from_mesh_env
    elif workload is not None:
        config = Decision(workload.value, workload.source, "the workload's project")
    if config is None:
        raise DiscoveryError(
            "no project: not on Google Cloud, and neither MESH nor PROJECT_ID names one"
        )
    if workload is not None:
        d.decide("workload_project", workload)
    d.decide("config_project", config)
    quota = quota_project(config.value, workload.value if workload else None)
    d.decide(
        "quota_project",
        Decision(
            quota,
            Source.DEFAULT,
            "x-goog-user-project on GKE calls: config project differs from the workload's"
            if quota
            else "config project is the workload's: no x-goog-user-project",
        ),
    )
    return config.value, workload.value if workload else None


def _cluster_hint(
    key: str,
    env_value: str | None,
    mesh_value: str | None,
    metadata_value: str | None,
    mesh_env: Mapping[str, str] | None,
    context_value: str | None = None,
) -> Decision[str] | None:
    if env_value:
        return Decision(env_value, Source.ENV, key)
    if mesh_value:
        return Decision(mesh_value, Source.ENV, "MESH")
    if context_value:
        return Decision(context_value, Source.KUBECONFIG, "the gke_ kubeconfig context")
    if metadata_value:
        return Decision(
            metadata_value, Source.METADATA, f"instance/attributes/{key.lower().replace('_', '-')}"
        )
    return layered(key, None, mesh_env)


@contextmanager
def _as(account: str | None, action: str) -> Iterator[None]:
    """Say what was being done, and as whom, when a call fails."""
    try:
        yield
    except DiscoveryError as error:
        who = f" as {account}" if account else ""
        raise DiscoveryError(
            f"GKE: {action}{who} failed: {error}", url=error.url, status=error.status
        ) from None


def _cluster(
    settings: Settings,
    http: HttpClient,
    instance: InstanceInfo,
    config_project: str,
    workload_project: str | None,
    d: Discovery,
    sleep: Callable[[float], None],
) -> ClusterInfo:
    mesh = settings.mesh if isinstance(settings.mesh, ClusterMesh) else None
    # A node's own cluster only counts when the mesh is in the node's project.
    same_project = config_project == workload_project
    context = d.kube_access.gke if d.kube_access is not None else None
    if context is not None and context[0] != config_project:
        context = None
    name = _cluster_hint(
        env.CLUSTER_NAME,
        settings.cluster_name,
        mesh.cluster if mesh else None,
        instance.cluster_name if same_project else None,
        d.mesh_env,
        context[2] if context else None,
    )
    location = _cluster_hint(
        env.CLUSTER_LOCATION,
        settings.cluster_location,
        mesh.location if mesh else None,
        instance.cluster_location if same_project else None,
        d.mesh_env,
        context[1] if context else None,
    )
    if d.kube_access is not None and name is not None and location is not None:
        # The Kubernetes client is already known: GKE would only confirm the name (the
        # original skipped GKE discovery too), and off Google Cloud there is no token for it.
        cluster = ClusterInfo(project=config_project, name=name.value, location=location.value)
        why = (
            f"named by {name.why} ({name.source}) and {location.why} ({location.source}); "
            f"not fetched from GKE: the API server comes from {d.kube_access.origin}"
        )
        return _decided_cluster(d, cluster, name.source, why)
    if instance.token is None:
        raise DiscoveryError(
            "no Google access token for the GKE API: the metadata server has no service "
            "account for this instance; name the cluster (CLUSTER_NAME and CLUSTER_LOCATION, "
            "or a gke_ kubeconfig context) with a kubeconfig instead"
        )
    client = GkeClient(http, settings.endpoints.container, sleep=sleep)
    quota = quota_project(config_project, workload_project)
    token = instance.token.token
    if name is not None and location is not None:
        with _as(instance.email, f"getting cluster {config_project}/{location.value}/{name.value}"):
            cluster = client.get_cluster(
                config_project, location.value, name.value, token=token, quota=quota
            )
        why = f"named by {name.why} ({name.source}) and {location.why} ({location.source})"
    else:
        mesh_only = mesh.mesh_clusters_only if mesh else True
        with _as(instance.email, f"listing clusters of project {config_project}"):
            clusters = client.list_clusters(
                config_project, token=token, quota=quota, mesh_only=mesh_only
            )
        if not clusters:
            raise DiscoveryError(
                f"no cluster found in project {config_project}"
                + (
                    " labelled mesh_id (MESH=gke://PROJECT considers every cluster)"
                    if mesh_only
                    else ""
                )
            )
        cluster, why = select_cluster(
            clusters,
            region=instance.region,
            name=name.value if name else None,
            location=location.value if location else None,
            project=config_project,
        )
    return _decided_cluster(d, cluster, Source.GKE, why)


def _decided_cluster(d: Discovery, cluster: ClusterInfo, source: Source, why: str) -> ClusterInfo:
    d.cluster = cluster
    where = {"project": cluster.project, "location": cluster.location, "name": cluster.name}
    d.decide("cluster", Decision(where, source, why))
    return cluster


def _project_number(
    settings: Settings,
    instance: InstanceInfo,
    config_project: str,
    workload_project: str | None,
    projects: _ProjectCache,
    d: Discovery,
) -> None:
    found: Decision[str | None] | None = layered(
        env.PROJECT_NUMBER, settings.project_number, d.mesh_env
    )
    if found is None and config_project == workload_project and instance.project_number:
        found = Decision(instance.project_number, Source.METADATA, "project/numeric-project-id")
    if found is None:
        info, note = projects.get(config_project, d)
        found = (
            Decision(info.number, Source.CRM, f"projectNumber of project {config_project}")
            if info is not None and info.number
            else Decision(None, Source.DEFAULT, f"unknown: {note}")
        )
    d.decide("project_number", found)


class _ProjectCache:
    """Resource Manager reads, at most one per project; a denial becomes a note."""

    def __init__(self, settings: Settings, http: HttpClient, instance: InstanceInfo) -> None:
        self.settings = settings
        self.http = http
        self.instance = instance
        self.found: dict[str, tuple[ProjectInfo | None, str]] = {}

    def get(self, project: str, d: Discovery) -> tuple[ProjectInfo | None, str]:
        if project not in self.found:
            self.found[project] = self._read(project, d)
        return self.found[project]

    def labels(self, project: str | None, d: Discovery) -> tuple[Mapping[str, str] | None, str]:
        if project is None:
            return None, "no workload project"
        info, note = self.get(project, d)
        return (info.labels if info else None), note

    def _read(self, project: str, d: Discovery) -> tuple[ProjectInfo | None, str]:
        if self.instance.token is None:
            return None, "no Google access token for Resource Manager"
        # Imported here: a start whose metadata gives the project number and whose namespace
        # comes from env or a k8s-NAMESPACE@ account never reads Resource Manager.
        from krun.discovery import crm  # noqa: PLC0415

        start = time.perf_counter()
        try:
            info = crm.get_project(
                self.http, self.settings.endpoints.crm, project, token=self.instance.token.token
            )
        except DiscoveryError as error:
            if error.status not in (403, 404):
                raise
            note = f"Resource Manager refused project {project}: {error}"
            d.notes.append(note)
            return None, note
        finally:
            elapsed = round((time.perf_counter() - start) * 1000, 2)
            d.timings["crm"] = d.timings.get("crm", 0) + elapsed
        return info, f"Resource Manager project {project}"


def _traffic_director(settings: Settings, instance: InstanceInfo, d: Discovery) -> Discovery:
    mesh = settings.mesh
    assert isinstance(mesh, TrafficDirector)
    d.step = "traffic-director"
    d.decide("mode", Decision("td", Source.ENV, "MESH=td:"))
    if mesh.project_number:
        number = Decision(mesh.project_number, Source.ENV, "MESH td:projects=")
    elif settings.project_number:
        number = Decision(settings.project_number, Source.ENV, env.PROJECT_NUMBER)
    elif instance.project_number:
        number = Decision(instance.project_number, Source.METADATA, "project/numeric-project-id")
    else:
        raise DiscoveryError("Traffic Director needs a project number: MESH=td:projects=N")
    d.decide("project_number", number)
    d.decide(
        "td_scope",
        Decision(
            mesh.scope, Source.ENV if mesh.scope != "default" else Source.DEFAULT, "MESH td:scopes="
        ),
    )
    d.decide(
        "zone",
        Decision(instance.zone, Source.METADATA, "instance/zone")
        if instance.zone
        else Decision("cloud-run-cluster", Source.DEFAULT, "no instance/zone"),
    )
    d.step = "done"
    return d
