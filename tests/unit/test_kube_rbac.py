"""RBAC evaluation and the Status bodies of refused requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.kube import status
from emulator.kube.rbac import (
    ANONYMOUS,
    AUTHENTICATED,
    Attributes,
    Policy,
    UserInfo,
    authorize,
    bootstrap_policy,
    forbidden_message,
    service_account_user,
)

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "hgate"
FORTIO = UserInfo("k8s-fortio@mesh-demo.iam.gserviceaccount.com", (AUTHENTICATED,))
HGATE = service_account_user("istio-system", "default")
OTHER_SA = service_account_user("fortio", "default")


def manifest_policy(namespace: str) -> Policy:
    """The RBAC of the repository's manifests plus the bootstrap policy, as one cluster holds it."""
    objects: list[dict[str, Any]] = list(bootstrap_policy())
    for name in ("cluster-rbac", "rbac", "istio-system-discovery-rbac"):
        objects += [d for d in yaml.safe_load_all((MANIFESTS / f"{name}.yaml").read_text()) if d]

    def of(kind: str, ns: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for o in objects
            if o["kind"] == kind and (ns is None or o["metadata"].get("namespace") == ns)
        ]

    return Policy(
        {o["metadata"]["name"]: o for o in of("ClusterRole")},
        of("ClusterRoleBinding"),
        {o["metadata"]["name"]: o for o in of("Role", namespace)},
        of("RoleBinding", namespace),
    )


CASES = [
    # user, verb, namespace, group, resource, subresource, name, allowed
    (FORTIO, "get", "istio-system", "", "configmaps", "", "mesh-env", True),
    (FORTIO, "get", "istio-system", "", "configmaps", "", "istio-ca-root-cert", True),
    (FORTIO, "get", "istio-system", "", "configmaps", "", "kube-root-ca.crt", False),
    (FORTIO, "update", "istio-system", "", "configmaps", "", "mesh-env", False),
    (FORTIO, "list", "istio-system", "", "configmaps", "", "", False),
    (FORTIO, "list", "istio-system", "", "services", "", "", True),
    (FORTIO, "get", "fortio", "", "services", "", "x", False),
    (FORTIO, "create", "istio-system", "", "serviceaccounts", "token", "default", False),
    (HGATE, "create", "istio-system", "", "serviceaccounts", "token", "default", True),
    (HGATE, "create", "istio-system", "", "serviceaccounts", "token", "other", False),
    (HGATE, "get", "istio-system", "", "configmaps", "", "krun", True),
    (HGATE, "create", "istio-system", "", "configmaps", "", "", True),
    (HGATE, "delete", "istio-system", "", "configmaps", "", "mesh-env", False),
    (HGATE, "watch", "", "", "services", "", "", True),
    (HGATE, "create", "fortio", "networking.istio.io", "workloadentries", "", "", True),
    (HGATE, "create", "fortio", "networking.istio.io", "serviceentries", "", "", False),
    (HGATE, "list", "", "discovery.k8s.io", "endpointslices", "", "", True),
    (HGATE, "list", "", "", "secrets", "", "", False),
    (OTHER_SA, "create", "istio-system", "", "serviceaccounts", "token", "default", False),
    (OTHER_SA, "get", "istio-system", "", "configmaps", "", "mesh-env", True),
    (ANONYMOUS, "get", "istio-system", "", "configmaps", "", "mesh-env", False),
    (UserInfo("root", ("system:masters",)), "delete", "", "", "namespaces", "", "x", True),
]


@pytest.mark.parametrize(
    ("user", "verb", "namespace", "group", "resource", "sub", "name", "allowed"), CASES
)
def test_manifest_grants(
    user: UserInfo,
    verb: str,
    namespace: str,
    group: str,
    resource: str,
    sub: str,
    name: str,
    allowed: bool,
) -> None:
    """The manifests grant what they grant on a real cluster, and nothing more."""
    attributes = Attributes(user, verb, namespace, group, resource, sub, name)
    assert allowed == authorize(attributes, manifest_policy(namespace)).allowed


@pytest.mark.parametrize(
    ("user", "path", "allowed"),
    [
        (ANONYMOUS, "/version", True),
        (ANONYMOUS, "/api", False),
        (FORTIO, "/apis/apps/v1", True),
        (FORTIO, "/metrics", False),
        (HGATE, "/openid/v1/jwks", True),
    ],
)
def test_non_resource_urls(user: UserInfo, path: str, allowed: bool) -> None:
    """Bootstrap roles open /version to everyone and discovery to the authenticated."""
    attributes = Attributes(user, "get", path=path, resource_request=False)
    assert allowed == authorize(attributes, manifest_policy("")).allowed


def test_rule_wildcards_and_subresources() -> None:
    """`*` and `*/sub` match as in kube; a Role cannot grant non-resource URLs."""
    role = {
        "rules": [
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]},
            {"nonResourceURLs": ["/x"], "verbs": ["get"]},
        ]
    }
    binding = {
        "metadata": {"name": "b"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "u"}],
    }
    policy = Policy({}, [], {"r": role}, [binding])
    user = UserInfo("u")
    assert authorize(
        Attributes(user, "patch", "ns", "apps", "deployments", "status", "d"), policy
    ).allowed
    assert not authorize(
        Attributes(user, "patch", "ns", "apps", "deployments", "", "d"), policy
    ).allowed


def test_missing_role_becomes_the_reason() -> None:
    """A binding to a missing role denies with the real server's `RBAC: ... not found` reason."""
    binding = {
        "metadata": {"name": "b"},
        "roleRef": {"kind": "ClusterRole", "name": "gone"},
        "subjects": [{"kind": "Group", "name": AUTHENTICATED}],
    }
    decision = authorize(Attributes(FORTIO, "get", "", "", "pods"), Policy({}, [binding]))
    assert not decision.allowed
    assert 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found' == decision.reason


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            Attributes(FORTIO, "get", "istio-system", "", "configmaps", name="x"),
            f'User "{FORTIO.name}" cannot get resource "configmaps" in API group "" in the namespace "istio-system"',
        ),
        (
            Attributes(FORTIO, "list", "", "rbac.authorization.k8s.io", "roles"),
            f'User "{FORTIO.name}" cannot list resource "roles" in API group "rbac.authorization.k8s.io" at the cluster scope',
        ),
        (
            Attributes(ANONYMOUS, "get", path="/api", resource_request=False),
            'User "system:anonymous" cannot get path "/api"',
        ),
    ],
)
def test_forbidden_messages(attributes: Attributes, message: str) -> None:
    """Refusals are worded exactly like kube-apiserver's."""
    assert message == forbidden_message(attributes)


class TestStatusShapes:
    def test_not_found(self) -> None:
        """404 names the resource in details.kind and in the message."""
        assert {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'roles.rbac.authorization.k8s.io "r" not found',
            "reason": "NotFound",
            "details": {"name": "r", "group": "rbac.authorization.k8s.io", "kind": "roles"},
            "code": 404,
        } == status.not_found("roles", "rbac.authorization.k8s.io", "r").body

    def test_invalid_lists_causes(self) -> None:
        """422 uses the Kind, and one message per cause in brackets when there are several."""
        error = status.invalid(
            "ConfigMap",
            "",
            "x",
            [status.required("metadata.name"), status.invalid_value("data[a b]", "a b", "bad")],
        )
        assert (
            'ConfigMap "x" is invalid: [metadata.name: Required value, data[a b]: Invalid value: "a b": bad]'
            == error.body["message"]
        )
        assert {
            "name": "x",
            "kind": "ConfigMap",
            "causes": [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "metadata.name",
                },
                {
                    "reason": "FieldValueInvalid",
                    "message": 'Invalid value: "a b": bad',
                    "field": "data[a b]",
                },
            ],
        } == error.body["details"]

    def test_forbidden_non_resource_and_conflict(self) -> None:
        """A path refusal has empty details; a conflict names the object."""
        assert {"message": "forbidden: why", "details": {}, "code": 403} == {
            k: v
            for k, v in status.forbidden("", "", "", "why").body.items()
            if k in ("message", "details", "code")
        }
        conflict = status.conflict("configmaps", "", "c", status.STALE).body
        assert ("Conflict", 409) == (conflict["reason"], conflict["code"])
