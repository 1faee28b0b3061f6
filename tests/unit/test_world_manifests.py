"""World files seeding clusters with manifests, and the demo world's seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from emulator.errors import WorldFileError
from emulator.istio.meshenv import publish_mesh_env
from emulator.kube.cluster import kube_cluster
from emulator.kube.manifests import MANIFESTS
from emulator.testing import demo_world_text
from emulator.world import World
from emulator.worldfile import load_world, parse_world

WORLD = """
projects:
  - id: seed-project
    number: 42
    clusters:
      - name: one
        location: us-central1-c
        resource_labels: {mesh_id: m}
        manifests:
%s
"""


def world_with(manifests: str, base_dir: Path | None = None) -> World:
    indented = "\n".join("          " + line for line in manifests.strip().splitlines())
    return parse_world(WORLD % indented, base_dir=base_dir)


def test_inline_and_file_manifests_are_applied_in_order(tmp_path: Path) -> None:
    """Inline documents and every document of a file (relative to the world file) are applied."""
    (tmp_path / "more.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\ndata: {k: v}\n"
        "---\n"
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: shop}\n"
    )
    world_file = tmp_path / "world.yaml"
    world_file.write_text(
        WORLD % "          - {apiVersion: v1, kind: Namespace, metadata: {name: shop}}\n"
        "          - more.yaml"
    )

    world = load_world(world_file)

    cluster = world.cluster("seed-project", "us-central1-c", "one")
    store = kube_cluster(world, cluster).store
    assert {"k": "v"} == store.get("configmaps", "shop", "a")["data"]
    assert store.find("serviceaccounts", "shop", "app") is not None
    assert 3 == len(cluster.manifests)


@pytest.mark.parametrize(
    ("manifests", "problem"),
    [
        ("- {kind: Namespace, metadata: {name: x}}", "manifests[0].apiVersion: required"),
        ("- {apiVersion: v1, kind: Namespace}", "manifests[0].metadata.name: required"),
        ("- 5", "manifests[0]: must be a manifest mapping or a file path, got int"),
        ("- missing.yaml", "manifests[0]: cannot read"),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: nowhere}}",
            'manifests[0]: the API server refused it: namespaces "nowhere" not found',
        ),
        (
            "- {apiVersion: v9, kind: Gadget, metadata: {name: g}}",
            "manifests[0]: the API server refused it: no matches for kind",
        ),
    ],
)
def test_bad_manifests_are_named_by_field(manifests: str, problem: str, tmp_path: Path) -> None:
    """A bad document, an unreadable file or an API refusal names the manifest's field path."""
    with pytest.raises(WorldFileError) as caught:
        world_with(manifests, base_dir=tmp_path)

    assert any(
        p.startswith("world.projects[0].clusters[0].") and problem in p
        for p in caught.value.problems
    ), caught.value.problems


def test_manifest_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """A manifest file of non-UTF-8 bytes is a problem of its field, not a crash."""
    (tmp_path / "latin1.yaml").write_bytes(b"data: caf\xe9\n")
    with pytest.raises(WorldFileError) as caught:
        world_with("- latin1.yaml", base_dir=tmp_path)

    assert any(
        p.startswith("world.projects[0].clusters[0].manifests[0]: cannot read") and "UTF-8" in p
        for p in caught.value.problems
    ), caught.value.problems


def test_demo_world_grants_mesh_env_as_the_manifests_do() -> None:
    """The demo's istio-autoconf Role and binding equal manifests/hgate's, which grant mesh-env."""
    repo = list(
        yaml.safe_load_all((MANIFESTS / "hgate" / "istio-system-discovery-rbac.yaml").read_text())
    )
    demo = yaml.safe_load(demo_world_text())
    seeded = demo["projects"][0]["clusters"][0]["manifests"]

    for expected in repo:
        found = [
            d
            for d in seeded
            if d["kind"] == expected["kind"] and d["metadata"] == expected["metadata"]
        ]
        assert 1 == len(found), expected["metadata"]
        assert {k: v for k, v in expected.items() if k != "metadata"} == {
            k: v for k, v in found[0].items() if k != "metadata"
        }


def test_mesh_env_is_filled_only_where_missing() -> None:
    """After binding, istiod's address, root and cluster id fill missing keys; set keys stay."""
    world = world_with(
        """
- {apiVersion: v1, kind: Namespace, metadata: {name: istio-system}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: mesh-env, namespace: istio-system}
  data: {CA_ADDR: "10.9.9.9:15012", CLUSTER_NAME: one}
"""
    )

    published = publish_mesh_env(world, {"istiod/seed-project/one": "https://127.0.0.1:4242"})

    data = published["seed-project/one"]
    assert "127.0.0.1:4242" == data["XDS_ADDR"]
    assert "10.9.9.9:15012" == data["CA_ADDR"], "a key the world file set is never overwritten"
    assert ("one", "one") == (data["ISTIO_META_CLUSTER_ID"], data["CLUSTER_NAME"])
    assert data["CAROOT_ISTIOD"].startswith("-----BEGIN CERTIFICATE-----")


def test_no_mesh_env_no_publication() -> None:
    """A cluster whose world file seeded no mesh-env gets none (no connector installed)."""
    world = world_with("- {apiVersion: v1, kind: Namespace, metadata: {name: istio-system}}")

    assert {} == publish_mesh_env(world, {"istiod/seed-project/one": "https://127.0.0.1:4242"})
