"""Authorization as kube-apiserver's RBAC authorizer decides it (pure).

A request (`Attributes`: user, verb, API group, resource, subresource,
namespace, name, or a non-resource path) is allowed when a ClusterRoleBinding,
or a RoleBinding in the request's namespace, binds one of the user's identities
to a role holding a matching rule. Members of `system:masters` are allowed
everything before RBAC is asked, as the real server's privileged-group
authorizer does. A binding that names a missing role contributes the
`RBAC: ... not found` reason the real server appends to its 403 message.

Rule matching follows `k8s.io/kubernetes/pkg/apis/rbac/v1` helpers: `*` in
verbs, apiGroups and resources; `resource/subresource` and `*/subresource`;
resourceNames narrowing; nonResourceURLs with a trailing `*` as a prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNTS = "system:serviceaccounts"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The `user` of a TokenReview or SelfSubjectReview status."""
        found: dict[str, Any] = {"username": self.name}
        if self.uid:
            found["uid"] = self.uid
        found["groups"] = list(self.groups)
        if self.extra:
            found["extra"] = {k: list(v) for k, v in self.extra.items()}
        return found


def service_account_user(namespace: str, name: str, uid: str = "", **extra: str) -> UserInfo:
    """The user a Kubernetes service-account token authenticates as."""
    return UserInfo(
        f"{SA_PREFIX}{namespace}:{name}",
        (SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}", AUTHENTICATED),
        uid,
        {k.replace("_", "-"): (v,) for k, v in extra.items()} if extra else {},
    )


ANONYMOUS = UserInfo("system:anonymous", (UNAUTHENTICATED,))


@dataclass(frozen=True, slots=True)
class Attributes:
    user: UserInfo
    verb: str
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    """Why (allowed: which binding; denied: RBAC errors met on the way, else empty)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The RBAC objects that can matter for one request."""

    cluster_roles: Mapping[str, Mapping[str, Any]]
    cluster_role_bindings: Sequence[Mapping[str, Any]]
    roles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Roles of the request's namespace, by name."""
    role_bindings: Sequence[Mapping[str, Any]] = ()
    """RoleBindings of the request's namespace."""


def forbidden_message(attributes: Attributes) -> str:
    """The sentence a 403 carries, word for word as kube-apiserver writes it."""
    user = attributes.user.name
    if not attributes.resource_request:
        return f'User "{user}" cannot {attributes.verb} path "{attributes.path}"'
    what = (
        f'User "{user}" cannot {attributes.verb} resource "{attributes.combined_resource}" '
        f'in API group "{attributes.api_group}"'
    )
    if attributes.namespace:
        return f'{what} in the namespace "{attributes.namespace}"'
    return f"{what} at the cluster scope"


def authorize(attributes: Attributes, policy: Policy) -> Decision:
    """Allow or deny one request."""
    if MASTERS in attributes.user.groups:
        return Decision(True, f"member of {MASTERS}")
    errors: list[str] = []
    for binding in policy.cluster_role_bindings:
        if not _binds(binding, attributes.user, ""):
            continue
        role = _role(binding, policy.cluster_roles, {}, errors)
        if role is not None and _rules_allow(role, attributes, namespaced_role=False):
            return Decision(True, f"ClusterRoleBinding {_name(binding)}")
    if attributes.namespace:
        for binding in policy.role_bindings:
            if not _binds(binding, attributes.user, attributes.namespace):
                continue
            role = _role(binding, policy.cluster_roles, policy.roles, errors)
            if role is not None and _rules_allow(role, attributes, namespaced_role=True):
                return Decision(True, f"RoleBinding {attributes.namespace}/{_name(binding)}")
    if not errors:
        return Decision(False)
    listed = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return Decision(False, f"RBAC: {listed}")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _binds(binding: Mapping[str, Any], user: UserInfo, namespace: str) -> bool:
    for subject in binding.get("subjects") or ():
        if not isinstance(subject, Mapping):
            continue
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            sa_namespace = subject.get("namespace") or namespace
            if user.name == f"{SA_PREFIX}{sa_namespace}:{name}":
                return True
    return False


def _role(
    binding: Mapping[str, Any],
    cluster_roles: Mapping[str, Mapping[str, Any]],
    roles: Mapping[str, Mapping[str, Any]],
    errors: list[str],
) -> Mapping[str, Any] | None:
    ref = binding.get("roleRef") or {}
    kind, name = ref.get("kind"), str(ref.get("name", ""))
    if kind == "ClusterRole":
        found = cluster_roles.get(name)
        if found is None:
            errors.append(f'clusterrole.rbac.authorization.k8s.io "{name}" not found')
        return found
    if kind == "Role":
        found = roles.get(name)
        if found is None:
            errors.append(f'role.rbac.authorization.k8s.io "{name}" not found')
        return found
    return None


def _rules_allow(role: Mapping[str, Any], attributes: Attributes, *, namespaced_role: bool) -> bool:
    return any(
        isinstance(rule, Mapping) and rule_allows(rule, attributes, namespaced_role=namespaced_role)
        for rule in role.get("rules") or ()
    )


def rule_allows(
    rule: Mapping[str, Any], attributes: Attributes, *, namespaced_role: bool = False
) -> bool:
    """Whether one PolicyRule covers the request."""
    if not _has(rule.get("verbs"), attributes.verb):
        return False
    if not attributes.resource_request:
        if namespaced_role:
            return False  # a Role cannot grant non-resource URLs
        return _url_matches(rule.get("nonResourceURLs") or (), attributes.path)
    if not _has(rule.get("apiGroups"), attributes.api_group):
        return False
    if not _resource_matches(rule.get("resources") or (), attributes):
        return False
    names = rule.get("resourceNames") or ()
    return not names or attributes.name in names


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    found = list(values or ())
    return "*" in found or wanted in found


def _resource_matches(resources: Iterable[str], attributes: Attributes) -> bool:
    combined = attributes.combined_resource
    sub = attributes.subresource
    for resource in resources:
        if resource in ("*", combined):
            return True
        if sub and resource == f"*/{sub}":
            return True
    return False


def _url_matches(urls: Iterable[str], path: str) -> bool:
    for url in urls:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def bootstrap_policy() -> list[dict[str, Any]]:
    """The default roles and bindings every cluster starts with (a subset of kube's)."""

    def cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            },
            "rules": rules,
        }

    def binding(name: str, role: str, groups: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
                for g in groups
            ],
        }

    public = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    discovery = sorted([*public, "/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*"])
    issuer = [
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/",
        "/openid/v1/jwks",
        "/openid/v1/jwks/",
    ]
    return [
        cluster_role(
            "cluster-admin",
            [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        ),
        cluster_role("system:discovery", [{"nonResourceURLs": discovery, "verbs": ["get"]}]),
        cluster_role("system:public-info-viewer", [{"nonResourceURLs": public, "verbs": ["get"]}]),
        cluster_role(
            "system:basic-user",
            [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            [
                {
                    "apiGroups": ["authentication.k8s.io"],
                    "resources": ["tokenreviews"],
                    "verbs": ["create"],
                },
                {
                    "apiGroups": ["authorization.k8s.io"],
                    "resources": ["subjectaccessreviews"],
                    "verbs": ["create"],
                },
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            [{"nonResourceURLs": issuer, "verbs": ["get"]}],
        ),
        binding("cluster-admin", "cluster-admin", [MASTERS]),
        binding("system:discovery", "system:discovery", [AUTHENTICATED]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [AUTHENTICATED, UNAUTHENTICATED],
        ),
        binding("system:basic-user", "system:basic-user", [AUTHENTICATED]),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            [SERVICE_ACCOUNTS],
        ),
    ]
