"""World files: a YAML definition validated into a `World`.

Validation collects every problem before failing, and each problem names its
field by path (`projects[0].clusters[1].location: required`), so one run of
`krun-emulator check` shows everything wrong with a file.

Shape (every key is documented in docs/world-file.md):

    name: demo
    token_lifetime_s: 3600
    projects:
      - id: demo-project
        number: 123456789012
        labels: {mesh-namespace: fortio}
        iam: {roles/container.clusterViewer: [serviceAccount:...]}
        service_accounts: [{name: k8s-fortio, iam: {...}}]
        clusters: [{name: istio, location: us-central1-c, resource_labels: {mesh_id: ...},
                    manifests: [{apiVersion: v1, kind: Namespace, ...}, ../manifests/rbac.yaml]}]
        run_services: [{name: fortio, region: us-central1, service_account: ...}]
    instances:
      - {name: vm-1, flavour: vm, project: demo-project, zone: us-central1-a}
    faults:
      - {service: container, kind: status, status: 503, times: 1}
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.errors import WorldFileError
from emulator.faults import FaultTable, parse_fault
from emulator.fieldcheck import FieldChecker
from emulator.fieldcheck import kind_of as _kind
from emulator.kube.cluster import kube_cluster
from emulator.kube.status import StatusError
from emulator.pki import WorldPKI
from emulator.tokens import TokenAuthority
from emulator.world import (
    DEFAULT_SCOPES,
    Cluster,
    Flavour,
    Instance,
    Project,
    RunService,
    ServiceAccount,
    World,
    region_of,
    stable_hex,
    stable_number,
)

_PROJECT_ID = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_SA_NAME = re.compile(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]+")
_LOCATION = re.compile(r"[a-z]+-[a-z]+[0-9]+(-[a-z])?")
_MEMBER = re.compile(
    r"allUsers|allAuthenticatedUsers|(user|serviceAccount|group|domain):\S+|principal(Set)?://\S+"
)

_TOP = {"name", "token_lifetime_s", "projects", "instances", "faults"}
_PROJECT = {
    "id",
    "number",
    "name",
    "labels",
    "attributes",
    "iam",
    "service_accounts",
    "clusters",
    "run_services",
}
_ACCOUNT = {"name", "email", "display_name", "disabled", "iam"}
_CLUSTER = {
    "name",
    "location",
    "resource_labels",
    "status",
    "master_version",
    "endpoint",
    "endpoint_port",
    "manifests",
}
_RUN = {
    "name",
    "region",
    "service_account",
    "invokers",
    "container_port",
    "min_instances",
    "max_instances",
    "concurrency",
}
_INSTANCE = {
    "name",
    "flavour",
    "project",
    "zone",
    "region",
    "service_account",
    "scopes",
    "attributes",
    "address",
    "hostname",
    "cluster",
    "service",
    "id",
}
_CLUSTER_STATUSES = {"PROVISIONING", "RUNNING", "RECONCILING", "STOPPING", "ERROR", "DEGRADED"}


class _Checker(FieldChecker):
    """The shared field reader plus IAM policies and members."""

    def members(self, value: Any, where: str) -> set[str]:
        if not isinstance(value, list):
            self.fail(where, f"must be a list of IAM members, got {_kind(value)}")
            return set()
        out: set[str] = set()
        for i, member in enumerate(value):
            if not isinstance(member, str) or _MEMBER.fullmatch(member) is None:
                self.fail(
                    f"{where}[{i}]",
                    f"{member!r} is not an IAM member (like serviceAccount:EMAIL or allUsers)",
                )
            else:
                out.add(member)
        return out

    def policy(self, obj: dict[str, Any], key: str, where: str) -> dict[str, set[str]]:
        value = obj.get(key) or {}
        if not isinstance(value, dict):
            self.fail(f"{where}.{key}", f"must map roles to member lists, got {_kind(value)}")
            return {}
        policy: dict[str, set[str]] = {}
        for role, members in value.items():
            if not isinstance(role, str) or not role.startswith("roles/"):
                self.fail(f"{where}.{key}.{role}", "role names start with 'roles/'")
                continue
            policy[role] = self.members(members, f"{where}.{key}.{role}")
        return policy


def load_world(
    path: Path, *, clock: Callable[[], float] = time.time, pki: WorldPKI | None = None
) -> World:
    """Read and validate a world file; WorldFileError lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorldFileError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise WorldFileError(str(path), [f"cannot read: not UTF-8 ({exc.reason})"]) from exc
    return parse_world(text, source=str(path), clock=clock, pki=pki, base_dir=path.parent)


def parse_world(
    text: str,
    *,
    source: str = "<string>",
    clock: Callable[[], float] = time.time,
    pki: WorldPKI | None = None,
    base_dir: Path | None = None,
) -> World:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise WorldFileError(source, [f"{where}: not valid YAML: {exc}"]) from exc
    return build_world(raw, source=source, clock=clock, pki=pki, base_dir=base_dir)


def build_world(
    raw: Any,
    *,
    source: str = "<data>",
    clock: Callable[[], float] = time.time,
    pki: WorldPKI | None = None,
    base_dir: Path | None = None,
) -> World:
    """Validate parsed YAML/JSON and build the world it describes.

    Manifest file paths are relative to `base_dir` (the current directory when None).
    """
    check = _Checker()
    seeds = _Seeds(base_dir)
    top = check.mapping(raw, "world", _TOP)
    name = check.string(top, "name", "world", default="world")
    lifetime = check.integer(top, "token_lifetime_s", "world", low=60, high=43200, default=3600)
    projects: dict[str, Project] = {}
    project_items = check.items(top, "projects", "world")
    if not project_items and not any(p.startswith("world.projects") for p in check.problems):
        check.fail("world.projects", "required: at least one project")
    for where, item in project_items:
        project = _project(check, item, where, seeds)
        if project is None:
            continue
        if project.id in projects:
            check.fail(f"{where}.id", f"duplicate project id {project.id!r}")
        numbers = {p.number for p in projects.values()}
        if project.number in numbers:
            check.fail(f"{where}.number", f"duplicate project number {project.number}")
        projects[project.id] = project
    accounts = {a.email: a for p in projects.values() for a in p.service_accounts.values()}
    for where, item in project_items:
        pid = item.get("id") if isinstance(item, dict) else None
        if isinstance(pid, str) and pid in projects:
            _run_services(check, item, where, projects[pid], accounts)
    instances: dict[str, Instance] = {}
    for where, item in check.items(top, "instances", "world"):
        instance = _instance(check, item, where, projects, accounts)
        if instance is None:
            continue
        if instance.name in instances:
            check.fail(f"{where}.name", f"duplicate instance name {instance.name!r}")
        instances[instance.name] = instance
    faults = FaultTable()
    for where, item in check.items(top, "faults", "world"):
        try:
            faults.add(parse_fault(item, where=where, now=clock()))
        except ValueError as exc:
            check.problems.append(str(exc))
    if check.problems:
        raise WorldFileError(source, check.problems)
    pki = pki or WorldPKI(name)
    for project in projects.values():
        for cluster in project.clusters:
            cluster.ca_pem = pki.root_pem.decode()
            cluster.sa_signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    world = World(
        name=name,
        projects=projects,
        instances=instances,
        pki=pki,
        tokens=TokenAuthority(),
        faults=faults,
        clock=clock,
        token_lifetime=lifetime or 3600,
    )
    seeds.apply(world, source)
    return world


@dataclass
class _Seeds:
    """Manifests that seed clusters' API servers, collected while the file is checked."""

    base_dir: Path | None
    """Where manifest file paths are relative to (the world file's directory)."""
    sites: list[tuple[Cluster, str, dict[str, Any]]] = field(default_factory=list)
    """Each document with its cluster and field path, in file order."""

    def apply(self, world: World, source: str) -> None:
        """Apply every document as admin, in file order, as `kubectl apply -f` would."""
        problems = []
        for cluster, where, document in self.sites:
            try:
                kube_cluster(world, cluster).apply(document)
            except StatusError as exc:
                problems.append(f"{where}: the API server refused it: {exc.message}")
        if problems:
            raise WorldFileError(source, problems)


def _project(check: _Checker, item: Any, where: str, seeds: _Seeds) -> Project | None:
    obj = check.mapping(item, where, _PROJECT)
    if not isinstance(item, dict):
        return None
    pid = check.string(obj, "id", where, required=True, pattern=_PROJECT_ID)
    number = check.integer(obj, "number", where, low=1, high=10**15 - 1, default=None)
    valid = bool(pid) and number is not None
    # An invalid id or number still gets its children checked, so one run
    # reports every problem in the file.
    pid = pid or "invalid-project"
    project = Project(
        id=pid,
        number=number or 0,
        name=check.string(obj, "name", where, default=pid),
        labels=check.str_map(obj, "labels", where),
        attributes=check.str_map(obj, "attributes", where),
        iam=check.policy(obj, "iam", where),
    )
    for sa_where, sa_item in check.items(obj, "service_accounts", where):
        account = _account(check, sa_item, sa_where, project)
        if account is None:
            continue
        if account.email in project.service_accounts:
            check.fail(sa_where, f"duplicate service account {account.email!r}")
        project.service_accounts[account.email] = account
    for c_where, c_item in check.items(obj, "clusters", where):
        cluster = _cluster(check, c_item, c_where, pid, seeds)
        if cluster is None:
            continue
        if any(c.name == cluster.name and c.location == cluster.location for c in project.clusters):
            check.fail(f"{c_where}.name", f"duplicate cluster {cluster.location}/{cluster.name}")
        project.clusters.append(cluster)
    return project if valid else None


def _account(check: _Checker, item: Any, where: str, project: Project) -> ServiceAccount | None:
    obj = check.mapping(item, where, _ACCOUNT)
    if not isinstance(item, dict):
        return None
    if ("name" in obj) == ("email" in obj):
        check.fail(where, "give exactly one of 'name' (in this project) or 'email' (any domain)")
        return None
    if "name" in obj:
        name = check.string(obj, "name", where, required=True, pattern=_SA_NAME)
        email = f"{name}@{project.id}.iam.gserviceaccount.com"
    else:
        email = check.string(obj, "email", where, required=True, pattern=_EMAIL)
    disabled = obj.get("disabled", False)
    if not isinstance(disabled, bool):
        check.fail(f"{where}.disabled", "must be true or false")
        disabled = False
    return ServiceAccount(
        email=email,
        project_id=project.id,
        unique_id=str(stable_number(email, 21)),
        display_name=check.string(obj, "display_name", where),
        disabled=disabled,
        iam=check.policy(obj, "iam", where),
    )


def _cluster(
    check: _Checker, item: Any, where: str, project_id: str, seeds: _Seeds
) -> Cluster | None:
    obj = check.mapping(item, where, _CLUSTER)
    if not isinstance(item, dict):
        return None
    name = check.string(obj, "name", where, required=True, pattern=_NAME)
    location = check.string(obj, "location", where, required=True, pattern=_LOCATION)
    status = check.string(obj, "status", where, default="RUNNING")
    if status not in _CLUSTER_STATUSES:
        check.fail(f"{where}.status", f"must be one of {sorted(_CLUSTER_STATUSES)}")
    port = check.integer(obj, "endpoint_port", where, low=1, high=65535, default=443)
    cluster = Cluster(
        project_id=project_id,
        name=name,
        location=location,
        resource_labels=check.str_map(obj, "resource_labels", where),
        status=status,
        endpoint=check.string(obj, "endpoint", where, default="127.0.0.1"),
        endpoint_port=port or 443,
    )
    if "master_version" in obj:
        cluster.master_version = check.string(obj, "master_version", where)
    for m_where, document in _manifests(check, obj, where, seeds.base_dir):
        cluster.manifests.append(document)
        seeds.sites.append((cluster, m_where, document))
    return cluster


def _manifests(
    check: _Checker, obj: dict[str, Any], where: str, base_dir: Path | None
) -> list[tuple[str, dict[str, Any]]]:
    """Inline manifest documents and the documents of manifest files, each with its path."""
    found: list[tuple[str, dict[str, Any]]] = []
    for m_where, item in check.items(obj, "manifests", where):
        if isinstance(item, dict):
            documents: list[tuple[str, Any]] = [(m_where, item)]
        elif isinstance(item, str) and item:
            path = Path(item)
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            try:
                loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except OSError as exc:
                check.fail(m_where, f"cannot read {path}: {exc.strerror}")
                continue
            except UnicodeDecodeError as exc:
                check.fail(m_where, f"cannot read {path}: not UTF-8 ({exc.reason})")
                continue
            except yaml.YAMLError as exc:
                check.fail(m_where, f"{path} is not valid YAML: {exc}")
                continue
            documents = [(f"{m_where} ({item} document {i})", d) for i, d in enumerate(loaded) if d]
        else:
            check.fail(m_where, f"must be a manifest mapping or a file path, got {_kind(item)}")
            continue
        for d_where, document in documents:
            if _manifest_ok(check, document, d_where):
                found.append((d_where, document))
    return found


def _manifest_ok(check: _Checker, document: Any, where: str) -> bool:
    """apiVersion, kind and metadata.name are there; the API server checks the rest."""
    if not isinstance(document, dict):
        check.fail(where, f"a manifest must be a mapping, got {_kind(document)}")
        return False
    before = len(check.problems)
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document[key]:
            check.fail(f"{where}.{key}", "required")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        check.fail(f"{where}.metadata.name", "required")
    return len(check.problems) == before


def _run_services(
    check: _Checker,
    item: dict[str, Any],
    where: str,
    project: Project,
    accounts: dict[str, ServiceAccount],
) -> None:
    for r_where, r_item in check.items(item, "run_services", where):
        obj = check.mapping(r_item, r_where, _RUN)
        if not isinstance(r_item, dict):
            continue
        name = check.string(obj, "name", r_where, required=True, pattern=_NAME)
        region = check.string(obj, "region", r_where, required=True, pattern=_LOCATION)
        account = check.string(obj, "service_account", r_where, required=True)
        if account and account not in accounts:
            check.fail(f"{r_where}.service_account", f"{account!r} is not a service account here")
        invokers = check.members(obj.get("invokers", []), f"{r_where}.invokers")
        port = check.integer(obj, "container_port", r_where, low=1, high=65535, default=8080)
        low = check.integer(obj, "min_instances", r_where, low=0, high=1000, default=0)
        high = check.integer(obj, "max_instances", r_where, low=1, high=1000, default=100)
        concurrency = check.integer(obj, "concurrency", r_where, low=1, high=1000, default=80)
        if low is not None and high is not None and low > high:
            check.fail(f"{r_where}.min_instances", f"{low} is more than max_instances ({high})")
        if any(s.name == name and s.region == region for s in project.run_services):
            check.fail(f"{r_where}.name", f"duplicate Cloud Run service {region}/{name}")
        project.run_services.append(
            RunService(
                project_id=project.id,
                name=name,
                region=region,
                service_account=account,
                invokers=invokers,
                revision=f"{name}-00001-{stable_hex(name + region, 3)}",
                container_port=port or 8080,
                min_instances=low or 0,
                max_instances=high or 100,
                concurrency=concurrency or 80,
            )
        )


def _instance(
    check: _Checker,
    item: Any,
    where: str,
    projects: dict[str, Project],
    accounts: dict[str, ServiceAccount],
) -> Instance | None:
    obj = check.mapping(item, where, _INSTANCE)
    if not isinstance(item, dict):
        return None
    name = check.string(obj, "name", where, required=True, pattern=_NAME)
    raw_flavour = obj.get("flavour")
    try:
        flavour = Flavour(str(raw_flavour))
    except ValueError:
        check.fail(
            f"{where}.flavour",
            f"must be one of {[f.value for f in Flavour]}, got {raw_flavour!r}",
        )
        return None
    project_id = check.string(obj, "project", where, required=True)
    project = projects.get(project_id)
    if project_id and project is None:
        check.fail(f"{where}.project", f"{project_id!r} is not a project in this world")
    account: str | None = check.string(obj, "service_account", where) or None
    if account is not None and account not in accounts:
        check.fail(f"{where}.service_account", f"{account!r} is not a service account here")
    scopes = obj.get("scopes", list(DEFAULT_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        check.fail(f"{where}.scopes", "must be a list of OAuth scope URLs")
        scopes = list(DEFAULT_SCOPES)
    attributes = check.str_map(obj, "attributes", where)
    cluster_name = check.string(obj, "cluster", where) or None
    service_name = check.string(obj, "service", where) or None
    zone = check.string(obj, "zone", where, pattern=_LOCATION)
    if project is None or not name:
        return None
    if flavour is Flavour.SERVERLESS:
        service = next((s for s in project.run_services if s.name == service_name), None)
        if service is None:
            check.fail(f"{where}.service", "a cloudrun instance names a run_service of its project")
            return None
        zone = zone or f"{service.region}-1"
        account = account or service.service_account
        default_id = stable_hex(f"{project_id}/{name}", 64) + stable_hex(name, 32)
    elif flavour is Flavour.GKE:
        cluster = next((c for c in project.clusters if c.name == cluster_name), None)
        if cluster is None:
            check.fail(f"{where}.cluster", "a gke instance names a cluster of its project")
            return None
        zone = zone or (cluster.location if cluster.zonal else f"{cluster.location}-a")
        attributes = {
            "cluster-name": cluster.name,
            "cluster-location": cluster.location,
            "cluster-uid": stable_hex(cluster.self_link, 32),
            **attributes,
        }
        default_id = str(stable_number(f"{project_id}/{name}", 19))
    else:
        if not zone:
            check.fail(f"{where}.zone", "required for a vm")
            return None
        default_id = str(stable_number(f"{project_id}/{name}", 19))
    if region_of(zone) == zone and flavour is not Flavour.SERVERLESS:
        check.fail(f"{where}.zone", f"{zone!r} is a region; a zone looks like us-central1-a")
    return Instance(
        name=name,
        flavour=flavour,
        project_id=project_id,
        zone=zone,
        id=check.string(obj, "id", where, default=default_id),
        service_account=account,
        scopes=tuple(scopes),
        attributes=attributes,
        address=check.string(obj, "address", where) or None,
        hostname=check.string(
            obj, "hostname", where, default=f"{name}.{zone}.c.{project_id}.internal"
        ),
        cluster=cluster_name,
        service=service_name,
    )
