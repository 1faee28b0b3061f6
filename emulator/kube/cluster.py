"""One emulated cluster's API semantics, below HTTP: admission, storage, tokens, reviews.

`KubeCluster` is what the API server's handlers call once a request is
authenticated, authorized and parsed, and what in-process callers (tests,
the scenario harness, the emulated Istio control plane) use directly:

    kube = kube_cluster(world, cluster)      # one per world Cluster, made on first use
    kube.apply(manifest_object)              # create or replace, as admin
    kube.store.get("configmaps", "istio-system", "mesh-env")

It also does the little the controller manager would do that clients notice:
every new namespace gets a `default` ServiceAccount and the `kube-root-ca.crt`
ConfigMap. A new cluster has the `default`, `kube-system`, `kube-public` and
`kube-node-lease` namespaces, the `kubernetes` Service and the bootstrap RBAC
policy (cluster-admin for `system:masters`, discovery for everyone
authenticated).
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from emulator.kube import admission, authn, rbac, status
from emulator.kube.kinds import NAMESPACES, SUBRESOURCE_KINDS, Kind, Registry
from emulator.kube.mergekeys import schema_for
from emulator.kube.patch import PatchError, json_patch, merge_patch, strategic_merge
from emulator.kube.store import Store, meta, timestamp
from emulator.kube_tokens import DEFAULT_LIFETIME, mint
from emulator.world import Cluster, World

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
MIN_TOKEN_SECONDS = 600
MAX_TOKEN_SECONDS = 1 << 32
_lock = threading.Lock()


def kube_cluster(world: World, cluster: Cluster) -> KubeCluster:
    """The cluster's emulated API state, made on first use and kept on the Cluster."""
    with _lock:
        if cluster.kube is None:
            cluster.kube = KubeCluster(world, cluster)
        return cluster.kube


def present(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """An object as served through `kind`'s version: kind and apiVersion first, as Go encodes."""
    rest = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    return {"kind": kind.kind, "apiVersion": kind.api_version, **rest}


class KubeCluster:
    """Objects and rules of one emulated cluster; thread-safe through its store."""

    def __init__(self, world: World, cluster: Cluster, *, admin_token: str | None = None) -> None:
        self.world = world
        self.cluster = cluster
        self.registry = Registry()
        self.store = Store(self.registry, clock=world.clock)
        self.admin_token = admin_token or "kadm." + secrets.token_urlsafe(32)
        self._bootstrap()

    @property
    def audiences(self) -> list[str]:
        """The API audiences: what a service-account token must carry to call this server."""
        return [self.cluster.issuer]

    @property
    def name(self) -> str:
        """The kubeconfig name GKE tools give the cluster: `gke_PROJECT_LOCATION_NAME`."""
        c = self.cluster
        return f"gke_{c.project_id}_{c.location}_{c.name}"

    def kind(self, group: str, version: str, plural: str) -> Kind:
        found = self.registry.lookup(group, version, plural)
        if found is None:
            raise status.no_such_path()
        return found

    # Authentication and authorization.

    def authenticate(self, authorization: str | None) -> rbac.UserInfo:
        return authn.authenticate_header(
            authorization,
            world=self.world,
            cluster=self.cluster,
            admin_token=self.admin_token,
            audiences=self.audiences,
            lookup=self.store.find,
        )

    def authorize(self, attributes: rbac.Attributes) -> rbac.Decision:
        return rbac.authorize(attributes, self.policy(attributes.namespace))

    def policy(self, namespace: str) -> rbac.Policy:
        group = "rbac.authorization.k8s.io"
        cluster_roles, _ = self.store.list(f"clusterroles.{group}")
        bindings, _ = self.store.list(f"clusterrolebindings.{group}")
        roles: list[dict[str, Any]] = []
        role_bindings: list[dict[str, Any]] = []
        if namespace:
            roles, _ = self.store.list(f"roles.{group}", namespace)
            role_bindings, _ = self.store.list(f"rolebindings.{group}", namespace)
        return rbac.Policy(
            {r["metadata"]["name"]: r for r in cluster_roles},
            bindings,
            {r["metadata"]["name"]: r for r in roles},
            role_bindings,
        )

    # Reads.

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        return present(kind, self.store.get(kind.resource_key, namespace, name))

    # Writes.

    def _context(self) -> admission.ClusterContext:
        services, _ = self.store.list("services")
        ips = [s.get("spec", {}).get("clusterIP", "") for s in services]
        ports = [
            p.get("nodePort", 0)
            for s in services
            for p in s.get("spec", {}).get("ports") or []
            if isinstance(p, dict)
        ]
        return admission.ClusterContext(
            self.cluster.services_ipv4_cidr, ips, ports, timestamp(self.world.clock())
        )

    def _check_identity(self, kind: Kind, obj: Any, namespace: str) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise status.bad_request(
                f"the object provided is unrecognized (must be of type {kind.kind}): "
                "the body is not a JSON object"
            )
        body_kind, body_version = obj.get("kind"), obj.get("apiVersion")
        if (body_kind and body_kind != kind.kind) or (
            body_version and body_version != kind.api_version
        ):
            raise status.bad_request(
                f"the object provided is unrecognized (must be of type {kind.kind}): "
                f"couldn't use {body_version}, Kind={body_kind} as {kind.api_version}, "
                f"Kind={kind.kind}"
            )
        metadata = obj.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise status.bad_request(
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                "metadata must be an object"
            )
        obj = copy.deepcopy(obj)
        checked: dict[str, Any] = obj
        body_namespace = meta(obj).get("namespace")
        if kind.namespaced:
            if body_namespace and body_namespace != namespace:
                raise status.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta(obj)["namespace"] = namespace
        else:
            meta(obj).pop("namespace", None)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        meta(obj).pop("managedFields", None)
        return checked

    def create(
        self, kind: Kind, namespace: str, obj: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """POST: admit and store a new object."""
        obj = self._check_identity(kind, obj, namespace)
        for dropped in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta(obj).pop(dropped, None)
        admission.prepare_create(kind, obj, self._context())
        if dry_run:
            return present(kind, obj)
        created = self.store.create(kind.resource_key, obj)
        if kind.resource_key == NAMESPACES:
            self._namespace_added(created["metadata"]["name"])
        return present(kind, created)

    def replace(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        obj: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT: replace an object (or only its status, through `/status`)."""
        obj = self._check_identity(kind, obj, namespace)
        body_name = meta(obj).get("name")
        if body_name != name:
            raise status.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        old = self.store.get(kind.resource_key, namespace, name)
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = obj.get("status")
            merged["metadata"]["resourceVersion"] = meta(obj).get("resourceVersion")
            obj = merged
        elif "status" in kind.subresources:
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
        for kept in ("uid", "creationTimestamp"):
            if kept in old["metadata"] and not meta(obj).get(kept):
                meta(obj)[kept] = old["metadata"][kept]
        if subresource != "status":
            admission.prepare_update(kind, obj, old, self._context())
        if dry_run:
            return present(kind, obj)
        return present(kind, self.store.update(kind.resource_key, obj))

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PATCH in any of the three formats; retried when a concurrent write intervenes."""
        if content_type == STRATEGIC_PATCH and not kind.builtin:
            raise status.unsupported_media_type(
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}"
            )
        if content_type not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
            raise status.unsupported_media_type(
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_PATCH}"
            )
        for _ in range(5):
            current = self.get(kind, namespace, name)
            try:
                if content_type == JSON_PATCH:
                    patched = json_patch(current, body)
                elif content_type == MERGE_PATCH:
                    if not isinstance(body, dict):
                        raise PatchError("a merge patch must be a JSON object")
                    patched = merge_patch(current, body)
                else:
                    patched = strategic_merge(current, body, schema_for(kind.kind))
            except PatchError as exc:
                if content_type == JSON_PATCH:
                    raise status.StatusError(422, "Invalid", str(exc)) from exc
                raise status.bad_request(str(exc)) from exc
            if not isinstance(patched, dict):
                raise status.bad_request("the patch did not produce an object")
            wanted = meta(patched).get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise status.conflict(kind.plural, kind.group, name, status.STALE)
            meta(patched)["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return self.replace(
                    kind, namespace, name, patched, subresource=subresource, dry_run=dry_run
                )
            except status.StatusError as exc:
                if exc.reason != "Conflict" or wanted:
                    raise
        raise status.conflict(kind.plural, kind.group, name, status.STALE)

    def delete(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        options: dict[str, Any],
        *,
        dry_run: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """DELETE: the HTTP status and body kube-apiserver answers with."""
        preconditions = options.get("preconditions") or {}
        if dry_run:
            return 200, self.get(kind, namespace, name)
        last = self.store.delete(
            kind.resource_key,
            namespace,
            name,
            uid=preconditions.get("uid"),
            resource_version=preconditions.get("resourceVersion"),
        )
        pending = bool(last["metadata"].get("deletionTimestamp")) and (
            self.store.find(kind.resource_key, namespace, name) is not None
        )
        if kind.returns_deleted or pending:
            return (202 if pending and kind.resource_key != NAMESPACES else 200), present(
                kind, last
            )
        return 200, status.success(name, kind.group, kind.plural, last["metadata"]["uid"])

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace one manifest object, as an administrator (no RBAC)."""
        kind = self.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if kind is None:
            raise status.bad_request(
                f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"'
            )
        namespace = str(meta(obj).get("namespace") or ("default" if kind.namespaced else ""))
        name = str(meta(obj).get("name", ""))
        existing = self.store.find(kind.resource_key, namespace, name)
        if existing is None:
            return self.create(kind, namespace, obj)
        replacement = copy.deepcopy(obj)
        meta(replacement)["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self.replace(kind, namespace, name, replacement)

    def apply_documents(self, documents: Iterable[Any]) -> list[dict[str, Any]]:
        return [self.apply(d) for d in documents if isinstance(d, dict) and d]

    def apply_file(self, path: Path) -> list[dict[str, Any]]:
        """Apply every document of a YAML (or JSON) manifest file."""
        return self.apply_documents(yaml.safe_load_all(path.read_text(encoding="utf-8")))

    # Subresources and reviews.

    def request_token(self, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """serviceaccounts/NAME/token: a TokenRequest answered with a signed token."""
        group, version, kind_name = SUBRESOURCE_KINDS[("serviceaccounts", "token")]
        if not isinstance(body, dict):
            raise status.bad_request("the body of a TokenRequest must be a JSON object")
        account = self.store.get("serviceaccounts", namespace, name)
        spec = body.get("spec") or {}
        if not isinstance(spec, dict):
            raise status.bad_request("the spec of a TokenRequest must be a JSON object")
        causes: list[status.Cause] = []
        audiences = spec.get("audiences") or self.audiences
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            causes.append(
                status.invalid_value(
                    "spec.audiences", audiences, "must be a list of non-empty strings"
                )
            )
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_LIFETIME if seconds is None else seconds
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            causes.append(
                status.invalid_value("spec.expirationSeconds", seconds, "must be an integer")
            )
        elif seconds < MIN_TOKEN_SECONDS:
            causes.append(
                status.invalid_value(
                    "spec.expirationSeconds",
                    seconds,
                    "may not specify a duration less than 10 minutes",
                )
            )
        elif seconds > MAX_TOKEN_SECONDS:
            causes.append(
                status.invalid_value(
                    "spec.expirationSeconds",
                    seconds,
                    "may not specify a duration larger than 2^32 seconds",
                )
            )
        bound = spec.get("boundObjectRef")
        pod: tuple[str, str] | None = None
        if bound:
            if not isinstance(bound, dict) or bound.get("kind") != "Pod":
                kind_given = bound.get("kind") if isinstance(bound, dict) else bound
                causes.append(status.not_supported("spec.boundObjectRef.kind", kind_given, ["Pod"]))
            else:
                found = self.store.get("pods", namespace, str(bound.get("name", "")))
                uid = found["metadata"]["uid"]
                if bound.get("uid") and bound["uid"] != uid:
                    raise status.conflict(
                        "pods",
                        "",
                        str(bound.get("name")),
                        f"the UID in the bound object reference ({bound['uid']}) does not match "
                        "the UID in record. The object might have been deleted and then recreated",
                    )
                pod = (found["metadata"]["name"], uid)
        if causes:
            raise status.invalid(kind_name, group, name, causes)
        now = self.world.clock()
        assert isinstance(seconds, int)
        token = mint(
            self.cluster,
            namespace,
            name,
            list(audiences),
            now=now,
            lifetime=seconds,
            sa_uid=account["metadata"]["uid"],
            pod=pod,
        )
        return {
            "kind": kind_name,
            "apiVersion": f"{group}/{version}",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {
                "audiences": list(audiences),
                "expirationSeconds": seconds,
                "boundObjectRef": bound or None,
            },
            "status": {"token": token, "expirationTimestamp": timestamp(now + seconds)},
        }

    def review_token(self, body: Any) -> dict[str, Any]:
        """tokenreviews: whether a token authenticates, as whom, for which audiences."""
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise status.bad_request("the body of a TokenReview must be an object with a spec")
        spec = body["spec"]
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise status.invalid(
                "TokenReview", "authentication.k8s.io", "", [status.required("spec.token")]
            )
        wanted = list(spec.get("audiences") or self.audiences)
        result: dict[str, Any]
        try:
            found = authn.authenticate_token(
                token,
                world=self.world,
                cluster=self.cluster,
                admin_token=self.admin_token,
                audiences=wanted,
                lookup=self.store.find,
            )
            audiences = list(found.audiences) or [a for a in wanted if a in self.audiences]
            if not audiences:
                raise authn.TokenRejectedError(
                    f"token audiences {self.audiences} is invalid for the target audiences {wanted}"
                )
            result = {"authenticated": True, "user": found.user.to_json(), "audiences": audiences}
        except authn.TokenRejectedError as exc:
            result = {"user": {}, "error": f"[{exc}]"}
        return {
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": result,
        }

    def review_access(
        self, kind_name: str, body: Any, user: rbac.UserInfo, namespace: str = ""
    ) -> dict[str, Any]:
        """(Self|Local)SubjectAccessReview: would the user be allowed?"""
        if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
            raise status.bad_request(f"the body of a {kind_name} must be an object with a spec")
        spec = body["spec"]
        if kind_name != "SelfSubjectAccessReview":
            user = rbac.UserInfo(
                str(spec.get("user") or ""),
                tuple(spec.get("groups") or ()),
                str(spec.get("uid") or ""),
            )
        resource = spec.get("resourceAttributes")
        other = spec.get("nonResourceAttributes")
        if isinstance(resource, dict):
            if kind_name == "LocalSubjectAccessReview" and resource.get("namespace") != namespace:
                raise status.invalid(
                    kind_name,
                    "authorization.k8s.io",
                    "",
                    [
                        status.invalid_value(
                            "spec.resourceAttributes.namespace",
                            resource.get("namespace"),
                            "must match metadata.namespace",
                        )
                    ],
                )
            attributes = rbac.Attributes(
                user,
                str(resource.get("verb") or ""),
                str(resource.get("namespace") or ""),
                str(resource.get("group") or ""),
                str(resource.get("resource") or ""),
                str(resource.get("subresource") or ""),
                str(resource.get("name") or ""),
            )
        elif isinstance(other, dict):
            attributes = rbac.Attributes(
                user,
                str(other.get("verb") or ""),
                path=str(other.get("path") or ""),
                resource_request=False,
            )
        else:
            raise status.invalid(
                kind_name,
                "authorization.k8s.io",
                "",
                [
                    status.required(
                        "spec.resourceAttributes",
                        "exactly one of nonResourceAttributes or resourceAttributes must be "
                        "specified",
                    )
                ],
            )
        decision = self.authorize(attributes)
        result: dict[str, Any] = {"allowed": decision.allowed}
        if decision.reason:
            result["reason"] = decision.reason
        metadata: dict[str, Any] = {"creationTimestamp": None}
        if namespace:
            metadata["namespace"] = namespace
        return {
            "kind": kind_name,
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": metadata,
            "spec": spec,
            "status": result,
        }

    # Bootstrap and controllers.

    def _namespace_added(self, namespace: str) -> None:
        """What the service-account and root-CA publisher controllers do for a new namespace."""
        if self.store.find("serviceaccounts", namespace, "default") is None:
            self.store.create(
                "serviceaccounts",
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": namespace},
                },
            )
        if self.store.find("configmaps", namespace, "kube-root-ca.crt") is None:
            self.store.create(
                "configmaps",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": "kube-root-ca.crt",
                        "namespace": namespace,
                        "annotations": {
                            "kubernetes.io/description": (
                                "Contains a CA bundle that can be used to verify the "
                                "kube-apiserver when using internal endpoints such as the "
                                "internal service IP or kubernetes.default.svc. No other usage "
                                "is guaranteed across distributions of Kubernetes clusters."
                            )
                        },
                    },
                    "data": {"ca.crt": self.cluster.ca_pem},
                },
            )

    def _bootstrap(self) -> None:
        namespace_kind = self.kind("", "v1", "namespaces")
        for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(namespace_kind, "", {"metadata": {"name": namespace}})
        for obj in rbac.bootstrap_policy():
            self.apply(obj)
        self.create(
            self.kind("", "v1", "services"),
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 443}]},
            },
        )

    def save(self, path: Path) -> None:
        """Snapshot every object of the cluster to a JSON file."""
        self.store.save(path)

    def load(self, path: Path) -> None:
        """Restore a snapshot written by `save` (installed CRDs come back with it)."""
        self.store.load(path)
