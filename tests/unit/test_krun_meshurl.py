"""The MESH locator forms: golden table and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from krun.errors import ConfigError
from krun.meshurl import (
    ClusterMesh,
    MeshEnvFile,
    MeshEnvUrl,
    MeshLocator,
    TrafficDirector,
    parse_mesh,
)

GOLDEN: dict[str, MeshLocator] = {
    "gke://mesh-demo": ClusterMesh(project="mesh-demo", mesh_clusters_only=False),
    "gke://mesh-demo/": ClusterMesh(project="mesh-demo", mesh_clusters_only=False),
    "gke://mesh-demo/us-central1-c/istio": ClusterMesh(
        project="mesh-demo", location="us-central1-c", cluster="istio", mesh_clusters_only=False
    ),
    "gke://mesh-demo/us-central1/istio/fortio": ClusterMesh(
        project="mesh-demo",
        location="us-central1",
        cluster="istio",
        namespace="fortio",
        mesh_clusters_only=False,
    ),
    "//container.googleapis.com/projects/mesh-demo/locations/us-central1-c/clusters/istio": (
        ClusterMesh(project="mesh-demo", location="us-central1-c", cluster="istio")
    ),
    "https://container.googleapis.com/v1/projects/mesh-demo/locations/us-central1-c/clusters/istio": (
        ClusterMesh(project="mesh-demo", location="us-central1-c", cluster="istio")
    ),
    "https://container.googleapis.com/v1/projects/mesh-demo/zones/us-central1-c/clusters/istio": (
        ClusterMesh(project="mesh-demo", location="us-central1-c", cluster="istio")
    ),
    "//container.googleapis.com/projects/mesh-demo": ClusterMesh(project="mesh-demo"),
    "//container.googleapis.com/projects/mesh-demo/locations/europe-west1": ClusterMesh(
        project="mesh-demo", location="europe-west1"
    ),
    "file:///etc/mesh/mesh-env.yaml": MeshEnvFile(path="/etc/mesh/mesh-env.yaml"),
    "file://./mesh%20env.json": MeshEnvFile(path="./mesh env.json"),
    "https://config.example.com/mesh-env.json": MeshEnvUrl(
        url="https://config.example.com/mesh-env.json"
    ),
    "td:": TrafficDirector(),
    "td:projects=123": TrafficDirector(project_number="123"),
    "td:scopes=s1": TrafficDirector(scope="s1"),
    "td:projects=123&scopes=s1": TrafficDirector(project_number="123", scope="s1"),
}


@pytest.mark.parametrize("text", GOLDEN)
def test_form_parses_to_its_locator(text: str) -> None:
    """Each documented form gives exactly its locator."""
    assert GOLDEN[text] == parse_mesh(text)


BAD = {
    "gke://": "no project",
    "gke://mesh-demo/us-central1": "gke:// takes a project",
    "gke://mesh-demo/us-central1/istio/ns/extra": "gke:// takes a project",
    "gke://Mesh_Demo": "project 'Mesh_Demo' is not valid",
    "gke://mesh-demo/moon/istio": "location 'moon' is not valid",
    "//container.googleapis.com/projects": "pairs of collection/name",
    "//container.googleapis.com/locations/x/projects/p": "the path must be projects/P",
    "https://container.googleapis.com/v1/projects/mesh-demo/clusters/istio": "the path must be",
    "file://": "empty file path",
    "https://": "no host",
    "td:projects=abc": "not a project number",
    "td:colour=red": "unknown or repeated",
    "td:projects=1&projects=2": "unknown or repeated",
    "td:scopes": "needs a value",
    "istio": "unknown form",
}


@pytest.mark.parametrize("text", BAD)
def test_bad_form_names_mesh_and_the_forms(text: str) -> None:
    """A malformed MESH says what is wrong and lists the accepted forms."""
    with pytest.raises(ConfigError) as caught:
        parse_mesh(text)

    assert caught.value.variable == "MESH"
    assert BAD[text] in str(caught.value)
    assert "gke://PROJECT" in str(caught.value)


@given(st.text(max_size=80))
def test_any_text_parses_or_is_a_config_error(text: str) -> None:
    """No input crashes the parser: it gives a locator or a ConfigError naming MESH."""
    try:
        parse_mesh(text)
    except ConfigError as error:
        assert error.variable == "MESH"


projects = st.from_regex(r"[a-z][a-z0-9-]{4,20}[a-z0-9]", fullmatch=True)
zones = st.from_regex(r"[a-z]{2,8}-[a-z]{2,8}[0-9](-[a-z])?", fullmatch=True)
clusters = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)


@given(projects, zones, clusters)
def test_gke_and_self_link_name_the_same_cluster(project: str, zone: str, cluster: str) -> None:
    """gke://P/L/C and the selfLink of P/L/C locate the same cluster."""
    short = parse_mesh(f"gke://{project}/{zone}/{cluster}")
    link = parse_mesh(
        f"https://container.googleapis.com/v1/projects/{project}/locations/{zone}/clusters/{cluster}"
    )

    assert isinstance(short, ClusterMesh)
    assert isinstance(link, ClusterMesh)
    assert (short.project, short.location, short.cluster) == (
        link.project,
        link.location,
        link.cluster,
    )
