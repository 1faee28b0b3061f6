"""The resource registry: what the API server serves, under which names.

A `Kind` ties a group/version/kind to its REST resource (`plural`), its
scope, short names, verbs and subresources, and to the behaviour the generic
machinery needs (whether it keeps `metadata.generation`, whether DELETE sends
the object back, which field selectors it supports). The built-in kinds are
fixed; each CustomResourceDefinition adds one Kind per served version and
removing the CRD removes them.

Objects are stored per *resource* (`group/plural`, `Kind.resource_key`), not per
version, because the versions of a CRD share one storage (with conversion
strategy None, a version change only rewrites `apiVersion`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

UNIVERSAL_FIELDS = ("metadata.name", "metadata.namespace")
"""Field selectors every kind supports."""

_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?\Z")


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    builtin: bool = True
    generation: bool = False
    """Keeps `metadata.generation`, bumped when anything but metadata and status changes."""
    returns_deleted: bool = False
    """DELETE answers with the object (pods, services...) instead of a Success Status."""
    fields: tuple[str, ...] = ()
    """Field selectors beyond metadata.name and metadata.namespace."""
    storage: bool = True
    """The version objects are kept in (irrelevant without conversion, shown in discovery)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def resource_key(self) -> str:
        """`configmaps`, `roles.rbac.authorization.k8s.io`: one storage per resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def persisted(self) -> bool:
        """False for the review kinds, which are computed and never stored."""
        return "get" in self.verbs

    def supports_field(self, name: str) -> bool:
        return name in UNIVERSAL_FIELDS or name in self.fields


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order (v1 > v1beta2 > v1beta1 > v1alpha1 > other), for sorting."""
    match = _VERSION.match(version)
    if match is None:
        return (0, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 3, "beta": 2, "alpha": 1}[stage]
    return (rank, int(major), int(minor or 0), "")


def _k(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    **rest: Any,
) -> Kind:
    return Kind(group, version, kind, plural, kind.lower(), namespaced, short, **rest)


_CREATE_ONLY = ("create",)

BUILTIN: tuple[Kind, ...] = (
    _k(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        ("ns",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        subresources=("status", "finalize"),
        returns_deleted=True,
        fields=("status.phase",),
    ),
    _k("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    _k("", "v1", "Secret", "secrets", True, fields=("type",)),
    _k("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), subresources=("token",)),
    _k(
        "",
        "v1",
        "Service",
        "services",
        True,
        ("svc",),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
        subresources=("status",),
        categories=("all",),
        returns_deleted=True,
    ),
    _k("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    _k(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        ("po",),
        subresources=("status",),
        categories=("all",),
        returns_deleted=True,
        fields=(
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    _k(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        ("deploy",),
        subresources=("status",),
        categories=("all",),
        generation=True,
        returns_deleted=True,
    ),
    _k("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True),
    _k("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _k("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _k("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _k("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _k(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        subresources=("status",),
        generation=True,
        returns_deleted=True,
    ),
    _k("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=_CREATE_ONLY),
    _k(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        False,
        verbs=_CREATE_ONLY,
    ),
    _k(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=_CREATE_ONLY,
    ),
    _k(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        False,
        verbs=_CREATE_ONLY,
    ),
    _k(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        True,
        verbs=_CREATE_ONLY,
    ),
)

SUBRESOURCE_KINDS = {
    ("serviceaccounts", "token"): ("authentication.k8s.io", "v1", "TokenRequest"),
}
"""Subresources whose body is another kind (everything else speaks the parent's kind)."""

CRD_RESOURCE = "customresourcedefinitions.apiextensions.k8s.io"
NAMESPACES = "namespaces"


class CRDError(ValueError):
    """A CustomResourceDefinition whose names or versions cannot be served."""


def kinds_of_crd(crd: Mapping[str, Any]) -> list[Kind]:
    """One Kind per served version of a CRD object; CRDError when its spec is unusable."""
    spec = crd.get("spec")
    if not isinstance(spec, Mapping):
        raise CRDError("spec: Required value")
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural") if isinstance(names, Mapping) else None
    kind = names.get("kind") if isinstance(names, Mapping) else None
    if not isinstance(group, str) or not group:
        raise CRDError("spec.group: Required value")
    if not isinstance(plural, str) or not plural or not isinstance(kind, str) or not kind:
        raise CRDError("spec.names.plural and spec.names.kind: Required value")
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        raise CRDError(f'spec.scope: Unsupported value: "{scope}"')
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        raise CRDError(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
        )
    found: list[Kind] = []
    for entry in versions:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise CRDError("spec.versions[*].name: Required value")
        if not entry.get("served", False):
            continue
        subresources = entry.get("subresources") or {}
        subs = tuple(
            s
            for s in ("status", "scale")
            if isinstance(subresources, Mapping) and s in subresources
        )
        found.append(
            Kind(
                group=group,
                version=entry["name"],
                kind=kind,
                plural=plural,
                singular=str(names.get("singular") or kind.lower()),
                namespaced=scope == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                subresources=subs,
                categories=tuple(names.get("categories") or ()),
                builtin=False,
                generation=True,
                returns_deleted=True,
                storage=bool(entry.get("storage", False)),
            )
        )
    return found


@dataclass
class Registry:
    """Every Kind the server serves: the built-in ones and those of installed CRDs."""

    _kinds: dict[tuple[str, str, str], Kind] = field(default_factory=dict)
    _crds: dict[str, list[Kind]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for kind in BUILTIN:
            self._kinds[(kind.group, kind.version, kind.plural)] = kind

    def lookup(self, group: str, version: str, plural: str) -> Kind | None:
        with self._lock:
            return self._kinds.get((group, version, plural))

    def by_resource(self, resource_key: str) -> Kind | None:
        """The preferred version's Kind of a stored resource."""
        with self._lock:
            candidates = [k for k in self._kinds.values() if k.resource_key == resource_key]
        if not candidates:
            return None
        return max(candidates, key=lambda k: version_priority(k.version))

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            return next(
                (
                    k
                    for k in self._kinds.values()
                    if k.group == group and k.version == version and k.kind == kind
                ),
                None,
            )

    def all(self) -> list[Kind]:
        with self._lock:
            return list(self._kinds.values())

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions, most preferred first (the core group is "")."""
        found: dict[str, set[str]] = {}
        for kind in self.all():
            found.setdefault(kind.group, set()).add(kind.version)
        return {g: sorted(v, key=version_priority, reverse=True) for g, v in found.items()}

    def kinds_in(self, group: str, version: str) -> list[Kind]:
        return sorted(
            (k for k in self.all() if k.group == group and k.version == version),
            key=lambda k: k.plural,
        )

    def install_crd(self, crd: Mapping[str, Any]) -> list[Kind]:
        """Serve the CRD's versions (replacing what an earlier version of it served)."""
        name = str((crd.get("metadata") or {}).get("name", ""))
        kinds = kinds_of_crd(crd)
        with self._lock:
            for old in self._crds.pop(name, []):
                self._kinds.pop((old.group, old.version, old.plural), None)
            for kind in kinds:
                self._kinds[(kind.group, kind.version, kind.plural)] = kind
            self._crds[name] = kinds
        return kinds

    def remove_crd(self, name: str) -> list[Kind]:
        with self._lock:
            gone = self._crds.pop(name, [])
            for old in gone:
                self._kinds.pop((old.group, old.version, old.plural), None)
        return gone

    def crd_kinds(self) -> Iterable[Kind]:
        with self._lock:
            return [k for kinds in self._crds.values() for k in kinds]
