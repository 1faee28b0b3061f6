"""Discovery's pure rules: platform, cluster selection, namespace and name, trust domain, mesh-env layering."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from krun.config import Settings
from krun.decisions import Decision, Source
from krun.discovery.gke import (
    ClusterInfo,
    cluster_from_json,
    quota_project,
    select_cluster,
)
from krun.discovery.metadata import Platform, last_segment, platform_of, region_of_zone
from krun.discovery.naming import (
    derive_name,
    derive_namespace,
    derive_trust_domain,
    namespace_from_project_id,
    spiffe_id,
)
from krun.errors import ConfigError, DiscoveryError
from krun.meshenv import layered, merged_ports, parse_document


class TestPlatform:
    @pytest.mark.parametrize(
        ("server", "platform"),
        [
            ("Metadata Server for Serverless", Platform.CLOUD_RUN),
            ("GKE Metadata Server", Platform.GKE),
            ("Metadata Server for VM", Platform.VM),
            ("nginx", Platform.VM),
            (None, Platform.VM),
        ],
    )
    def test_server_header_names_the_platform(self, server: str | None, platform: Platform) -> None:
        """The metadata server's Server header decides the platform; unknown means a VM."""
        assert platform == platform_of(server)[0]

    def test_region_and_zone_values(self) -> None:
        """Cloud Run's `projects/N/regions/R` and zones reduce to their names."""
        assert "us-central1" == last_segment("projects/1/regions/us-central1", "regions")
        assert "us-central1-a" == last_segment("projects/1/zones/us-central1-a", "zones")
        assert "us-central1" == region_of_zone("us-central1-a")
        assert "us-central1" == region_of_zone("us-central1-1")
        assert "europe-west1" == region_of_zone("europe-west1")


def cluster(name: str, location: str, **labels: str) -> ClusterInfo:
    return ClusterInfo(
        project="p", name=name, location=location, labels=MappingProxyType(dict(labels))
    )


ISTIO_ZONAL = cluster("istio", "us-central1-c", mesh_id="m")
REGIONAL = cluster("main", "us-central1", mesh_id="m")
EUROPE = cluster("plain", "europe-west1", mesh_id="m")
PREFERRED = cluster("config", "asia-east1", mesh_id="m", **{"krun-config-cluster": "true"})
OTHER_ZONE = cluster("other", "us-central1-b", mesh_id="m")

SELECTION: dict[str, tuple[list[ClusterInfo], dict[str, Any], str]] = {
    "regional before zonal": ([ISTIO_ZONAL, REGIONAL, EUROPE], {}, "main"),
    "zone of the region before elsewhere": ([EUROPE, ISTIO_ZONAL], {}, "istio"),
    "first of equals by API order": ([OTHER_ZONE, ISTIO_ZONAL], {}, "other"),
    "label beats region": ([REGIONAL, PREFERRED], {}, "config"),
    "no region: API order": ([EUROPE, ISTIO_ZONAL], {"region": None}, "plain"),
    "name restricts": ([REGIONAL, EUROPE], {"name": "plain"}, "plain"),
    "name then region": (
        [cluster("istio", "europe-west1"), ISTIO_ZONAL],
        {"name": "istio"},
        "istio@us-central1-c",
    ),
    "location restricts": ([REGIONAL, OTHER_ZONE], {"location": "us-central1-b"}, "other"),
    "the istio prefix is not a preference": (
        [cluster("istio-x", "europe-west1"), REGIONAL],
        {},
        "main",
    ),
}


@pytest.mark.parametrize("case", SELECTION)
def test_cluster_selection(case: str) -> None:
    """The documented rules pick this cluster."""
    clusters, hints, expected = SELECTION[case]
    kwargs: dict[str, Any] = {"region": "us-central1", **hints}

    chosen, why = select_cluster(clusters, project="p", **kwargs)

    name, _, location = expected.partition("@")
    assert name == chosen.name
    assert not location or location == chosen.location
    assert why


def test_selection_without_a_match_lists_what_exists() -> None:
    """A CLUSTER_NAME that matches nothing is an error naming the clusters found."""
    with pytest.raises(DiscoveryError) as caught:
        select_cluster([REGIONAL, EUROPE], region="us-central1", name="nope", project="p")

    assert "no cluster named 'nope' in project p" in str(caught.value)
    assert "us-central1/main, europe-west1/plain" in str(caught.value)


def test_selection_of_nothing_is_an_error() -> None:
    """An empty list is 'no cluster found', not a crash."""
    with pytest.raises(DiscoveryError, match="no cluster found in project p"):
        select_cluster([], region=None, project="p")


def test_cluster_from_rest_json() -> None:
    """The REST Cluster gives name, location, endpoint, decoded CA and labels."""
    info = cluster_from_json(
        "p",
        {
            "name": "istio",
            "location": "us-central1-c",
            "endpoint": "10.0.0.1",
            "masterAuth": {"clusterCaCertificate": "LS0tLS1CRUdJTg=="},
            "resourceLabels": {"mesh_id": "proj-1"},
        },
    )

    assert ("istio", "us-central1-c", "10.0.0.1") == (info.name, info.location, info.endpoint)
    assert "-----BEGIN" == info.ca_pem
    assert {"mesh_id": "proj-1"} == dict(info.labels)
    assert (
        "https://container.googleapis.com/v1/projects/p/locations/us-central1-c/clusters/istio"
        == info.url
    )


def test_quota_project_only_across_projects() -> None:
    """x-goog-user-project is the config project, sent only when it is not the workload's."""
    assert quota_project("config", "workload") == "config"
    assert quota_project("same", "same") is None
    assert quota_project("config", None) is None


def labels(found: Mapping[str, str] | None) -> object:
    calls: list[int] = []

    def read() -> tuple[Mapping[str, str] | None, str]:
        calls.append(1)
        return found, "test"

    read.calls = calls  # type: ignore[attr-defined]
    return read


NAMESPACES = {
    "env wins": (
        {"env_namespace": "a", "mesh_namespace": "b", "email": "k8s-c@p.iam"},
        {"mesh-namespace": "d"},
        "a",
        Source.ENV,
        False,
    ),
    "MESH namespace": ({"mesh_namespace": "b", "email": "k8s-c@p.iam"}, {}, "b", Source.ENV, False),
    "k8s- account": (
        {"email": "k8s-fortio@p.iam.gserviceaccount.com"},
        {"mesh-namespace": "d"},
        "fortio",
        Source.METADATA,
        False,
    ),
    "project label": ({"email": "vm@p.iam"}, {"mesh-namespace": "d"}, "d", Source.CRM, True),
    "project id rule": ({"project_id": "wlhe-cr-fortio-1"}, {}, "fortio", Source.METADATA, True),
    "labels unreadable": ({"project_id": "a-b-c-d"}, None, "c", Source.METADATA, True),
    "two-part id": ({"project_id": "mesh-demo"}, {}, "default", Source.DEFAULT, True),
    "nothing": ({}, None, "default", Source.DEFAULT, True),
}


@pytest.mark.parametrize("case", NAMESPACES)
def test_namespace_derivation(case: str) -> None:
    """Each rule in precedence order; Resource Manager is read only when rules 1-2 fail."""
    given, found_labels, value, source, read = NAMESPACES[case]
    reader = labels(found_labels)
    args = {
        "env_namespace": None,
        "mesh_namespace": None,
        "email": None,
        "project_id": None,
    } | given

    decision = derive_namespace(project_labels=reader, **args)  # type: ignore[arg-type]

    assert (value, source) == (decision.value, decision.source)
    assert read == bool(reader.calls)  # type: ignore[attr-defined]


def test_namespace_from_project_id_convention() -> None:
    """PREFIX-CONFIG-NAMESPACE-SUFFIX gives NAMESPACE; two parts or fewer give nothing."""
    assert "fortio" == namespace_from_project_id("wlhe-cr-fortio-1")
    assert namespace_from_project_id("mesh-demo") is None
    assert namespace_from_project_id(None) is None


NS = Decision("fortio", Source.METADATA, "test")
NAMES = {
    "WORKLOAD_NAME": ({"env_name": "n", "k_service": "s"}, "n", Source.ENV),
    "K_SERVICE": ({"k_service": "svc"}, "svc", Source.ENV),
    "K_SERVICE with version": ({"k_service": "v2--svc"}, "svc", Source.ENV),
    "gateway": ({"gateway": "hgate"}, "hgate", Source.ENV),
    "namespace": ({}, "fortio", Source.METADATA),
}


@pytest.mark.parametrize("case", NAMES)
def test_name_derivation(case: str) -> None:
    """WORKLOAD_NAME, K_SERVICE (part after --), GATEWAY_NAME, then the namespace."""
    given, value, source = NAMES[case]
    args: dict[str, Any] = {"env_name": None, "k_service": None, "gateway": None, **given}

    decision = derive_name(namespace=NS, **args)

    assert (value, source) == (decision.value, decision.source)


def test_trust_domain_precedence() -> None:
    """TRUST_DOMAIN env, then mesh-env, then the config project's pool (GKE never overrides env)."""
    project = Decision("mesh-demo", Source.ENV, "MESH")

    assert (
        "td.example"
        == derive_trust_domain(
            env_value="td.example", mesh_env={"TRUST_DOMAIN": "x"}, config_project=project
        ).value
    )
    assert (
        "x"
        == derive_trust_domain(
            env_value=None, mesh_env={"TRUST_DOMAIN": "x"}, config_project=project
        ).value
    )
    decided = derive_trust_domain(env_value=None, mesh_env=None, config_project=project)
    assert ("mesh-demo.svc.id.goog", Source.ENV) == (decided.value, decided.source)
    assert "spiffe://mesh-demo.svc.id.goog/ns/fortio/sa/default" == spiffe_id(
        decided.value, "fortio", "default"
    )


class TestMeshEnv:
    def test_plain_map_and_configmap_forms(self) -> None:
        """The document is the map itself or a ConfigMap whose data is used; numbers become text."""
        plain = parse_document('{"PROJECT_ID": "p", "PROJECT_NUMBER": 12}', origin="x")
        configmap = parse_document(
            "kind: ConfigMap\nmetadata: {name: mesh-env}\ndata:\n  PROJECT_ID: p\n  PROJECT_NUMBER: '12'\n",
            origin="x",
        )

        assert {"PROJECT_ID": "p", "PROJECT_NUMBER": "12"} == plain == configmap

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[1, 2]", "not a mapping"),
            ("a: {b: c}", "a must be a string"),
            ("a: [1", "not valid YAML or JSON"),
        ],
    )
    def test_bad_document(self, text: str, message: str) -> None:
        """A document that is not a string map is a ConfigError on MESH naming the problem."""
        with pytest.raises(ConfigError) as caught:
            parse_document(text, origin="doc.yaml")

        assert "MESH" == caught.value.variable
        assert message in str(caught.value)
        assert "doc.yaml" in str(caught.value)

    def test_env_wins_over_mesh_env(self) -> None:
        """Config(K): a non-empty environment value beats the map; the map fills the rest."""
        assert Source.ENV == layered("XDS_ADDR", "a:1", {"XDS_ADDR": "b:2"}).source  # type: ignore[union-attr]
        assert ("b:2", Source.MESH_ENV) == (
            layered("XDS_ADDR", None, {"XDS_ADDR": "b:2"}).value,  # type: ignore[union-attr]
            layered("XDS_ADDR", None, {"XDS_ADDR": "b:2"}).source,  # type: ignore[union-attr]
        )
        assert layered("XDS_ADDR", None, {"XDS_ADDR": " "}) is None
        assert layered("XDS_ADDR", None, None) is None

    def test_ports_merge_name_by_name_env_winning(self) -> None:
        """PORT_* from env and mesh-env merge; env wins per name (the original dropped env's)."""
        settings = Settings.from_env({"PORT_grpc": "9000", "PORT_http": "8081"})

        merged = merged_ports(settings.ports, {"PORT_grpc": "9090", "PORT_ssh": "22", "OTHER": "x"})

        assert {
            "grpc": "127.0.0.1:9000",
            "http": "127.0.0.1:8081",
            "ssh": "127.0.0.1:22",
        } == merged

    def test_bad_mesh_env_port_names_its_key(self) -> None:
        """A malformed PORT_* in mesh-env is named like an env one."""
        with pytest.raises(ConfigError, match="PORT_ssh"):
            merged_ports({}, {"PORT_ssh": "twenty-two"})
