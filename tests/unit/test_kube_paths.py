"""Request paths as kube-apiserver's RequestInfo reads them, and the discovery documents."""

from __future__ import annotations

import pytest

from emulator.kube.apiserver import Target, parse_target, verb_of
from emulator.kube.discovery import aggregated, openapi_v3_index, resource_list, wants_aggregated
from emulator.kube.kinds import Registry

REGISTRY = Registry()


def namespaced(group: str, version: str, plural: str) -> bool | None:
    found = REGISTRY.lookup(group, version, plural)
    return None if found is None else found.namespaced


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/api/v1/namespaces", Target("", "v1", "namespaces")),
        ("/api/v1/namespaces/ns", Target("", "v1", "namespaces", name="ns")),
        (
            "/api/v1/namespaces/ns/status",
            Target("", "v1", "namespaces", name="ns", subresource="status"),
        ),
        ("/api/v1/namespaces/ns/configmaps/c", Target("", "v1", "configmaps", "ns", "c")),
        (
            "/api/v1/namespaces/ns/serviceaccounts/default/token",
            Target("", "v1", "serviceaccounts", "ns", "default", "token"),
        ),
        ("/apis/apps/v1/namespaces/ns/deployments", Target("apps", "v1", "deployments", "ns")),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/x",
            Target("rbac.authorization.k8s.io", "v1", "clusterroles", name="x"),
        ),
        ("/api/v1/watch/namespaces/ns/pods", Target("", "v1", "pods", "ns")),
        (
            "/apis/example.com/v1/namespaces/ns/widgets",
            Target("example.com", "v1", "widgets", "ns"),
        ),
        ("/api/v1", None),
        ("/apis/apps/v1", None),
        ("/version", None),
        ("/api/v1/namespaces/ns/pods/p/log/extra", None),
    ],
)
def test_parse_target(path: str, target: Target | None) -> None:
    """Resource paths split into group, version, resource, namespace, name and subresource."""
    assert target == parse_target(path, namespaced)


@pytest.mark.parametrize(
    ("method", "name", "watch", "verb"),
    [
        ("GET", "x", False, "get"),
        ("GET", "", False, "list"),
        ("GET", "", True, "watch"),
        ("POST", "", False, "create"),
        ("PUT", "x", False, "update"),
        ("PATCH", "x", False, "patch"),
        ("DELETE", "x", False, "delete"),
        ("DELETE", "", False, "deletecollection"),
    ],
)
def test_verbs(method: str, name: str, watch: bool, verb: str) -> None:
    """HTTP methods map to RBAC verbs as the real server maps them."""
    assert verb == verb_of(method, Target("", "v1", "pods", "ns", name), watch)


def test_discovery_documents() -> None:
    """Subresources are listed as plural/sub; the aggregated form nests them; v3 indexes each group-version."""
    core = resource_list(REGISTRY, "", "v1")
    assert core is not None
    token = next(r for r in core["resources"] if r["name"] == "serviceaccounts/token")
    assert ("authentication.k8s.io", "TokenRequest", ["create"]) == (
        token["group"],
        token["kind"],
        token["verbs"],
    )
    groups = aggregated(REGISTRY, core=False)
    assert "apps" in [g["metadata"]["name"] for g in groups["items"]]
    assert (
        "/openapi/v3/api/v1?hash="
        in openapi_v3_index(REGISTRY)["paths"]["api/v1"]["serverRelativeURL"]
    )
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    assert (
        wants_aggregated(accept)
        == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert wants_aggregated("application/json") is None
