"""The GKE service's pure parts: cluster rendering, resource names and error shapes."""

from __future__ import annotations

import base64
import json

import pytest
from google.cloud.container_v1 import types as gke_types
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from emulator import gke, googleapi
from emulator.world import Cluster

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def make_cluster(**overrides: object) -> Cluster:
    fields: dict[str, object] = {
        "project_id": "mesh-demo",
        "name": "istio",
        "location": "us-central1-c",
        "resource_labels": {"mesh_id": "proj-123456789012"},
        "endpoint": "10.0.0.2",
        "ca_pem": PEM,
    }
    fields.update(overrides)
    return Cluster(**fields)  # type: ignore[arg-type]


class TestRenderCluster:
    def test_fields_krun_uses(self) -> None:
        """Name, location, endpoint, CA and labels come straight from the world cluster."""
        message = gke.render_cluster(make_cluster())

        assert message.name == "istio"
        assert message.location == "us-central1-c"
        assert message.endpoint == "10.0.0.2"
        assert base64.b64decode(message.master_auth.cluster_ca_certificate).decode() == PEM
        assert dict(message.resource_labels) == {"mesh_id": "proj-123456789012"}

    def test_zonal_cluster_links_and_zone(self) -> None:
        """A zonal cluster has one node zone and a selfLink in the older `zones` collection."""
        message = gke.render_cluster(make_cluster())

        assert message.zone == "us-central1-c"
        assert list(message.locations) == ["us-central1-c"]
        assert (
            message.self_link
            == "https://container.googleapis.com/v1/projects/mesh-demo/zones/us-central1-c/clusters/istio"
        )
        assert message.node_pools[0].self_link.endswith("/clusters/istio/nodePools/default-pool")

    def test_regional_cluster_spreads_over_three_zones(self) -> None:
        """A regional cluster reports its region as `zone` (as GKE does) and three node zones."""
        message = gke.render_cluster(make_cluster(name="plain", location="europe-west1"))

        assert message.zone == "europe-west1"
        assert list(message.locations) == ["europe-west1-b", "europe-west1-c", "europe-west1-d"]
        assert "/locations/europe-west1/clusters/plain" in message.self_link
        assert message.current_node_count == 9

    def test_identity_and_versions(self) -> None:
        """Workload pool, versions, status, id and etag look like GKE's."""
        cluster = make_cluster()
        message = gke.render_cluster(cluster)

        assert message.workload_identity_config.workload_pool == "mesh-demo.svc.id.goog"
        assert cluster.master_version == message.current_master_version
        assert cluster.master_version == message.current_node_version
        assert cluster.master_version == message.initial_cluster_version
        assert message.status == gke_types.Cluster.Status.RUNNING
        assert len(message.id) == 64
        assert int(message.id, 16) >= 0
        assert [len(part) for part in message.etag.split("-")] == [8, 4, 4, 4, 12]

    def test_rendering_is_stable(self) -> None:
        """The same world cluster always renders the same bytes (ids and etags are derived)."""
        first = gke_types.Cluster.serialize(gke.render_cluster(make_cluster()))
        second = gke_types.Cluster.serialize(gke.render_cluster(make_cluster()))

        assert first == second

    def test_etag_follows_labels(self) -> None:
        """Changing labels changes the etag and the label fingerprint."""
        before = gke.render_cluster(make_cluster())
        after = gke.render_cluster(make_cluster(resource_labels={"mesh_id": "other"}))

        assert before.etag != after.etag
        assert before.label_fingerprint != after.label_fingerprint

    def test_unknown_status_is_unspecified(self) -> None:
        """A status GKE does not know renders as STATUS_UNSPECIFIED instead of failing."""
        message = gke.render_cluster(make_cluster(status="MELTING"))

        assert message.status == gke_types.Cluster.Status.STATUS_UNSPECIFIED

    def test_endpoint_carries_a_non_default_port(self) -> None:
        """An emulated API server off port 443 travels in `endpoint`, since clients add https://."""
        assert (
            gke.endpoint_of(make_cluster(endpoint="127.0.0.1", endpoint_port=6443))
            == "127.0.0.1:6443"
        )
        assert gke.endpoint_of(make_cluster(endpoint="::1", endpoint_port=6443)) == "[::1]:6443"
        assert gke.endpoint_of(make_cluster(endpoint="34.1.2.3")) == "34.1.2.3"


class TestJson:
    def test_rest_json_is_proto_json(self) -> None:
        """REST JSON is camelCase with enum names, int64 as strings and no default fields."""
        body = gke.to_json(gke.render_cluster(make_cluster()))

        assert body["status"] == "RUNNING"
        assert body["defaultMaxPodsConstraint"] == {"maxPodsPerNode": "110"}
        assert body["resourceLabels"]["mesh_id"] == "proj-123456789012"
        assert "clusterCaCertificate" in body["masterAuth"]
        assert "statusMessage" not in body
        assert body["legacyAbac"] == {}

    def test_rest_and_grpc_carry_the_same_cluster(self) -> None:
        """Parsing the REST JSON back gives exactly the message gRPC serializes."""
        message = gke.render_cluster(make_cluster())

        from_json = gke_types.Cluster.from_json(json.dumps(gke.to_json(message)))

        assert gke_types.Cluster.serialize(message) == gke_types.Cluster.serialize(from_json)

    def test_empty_list_is_an_empty_object(self) -> None:
        """A list with no clusters is `{}`: proto JSON omits empty repeated fields."""
        assert gke.to_json(gke_types.ListClustersResponse()) == {}


class TestNames:
    def test_full_name(self) -> None:
        """A full name gives project, location and cluster."""
        assert gke.ClusterRef("p", "us-central1-c", "c") == gke.parse_cluster_name(
            "projects/p/locations/us-central1-c/clusters/c"
        )

    def test_singular_cluster_quirk(self) -> None:
        """The original krun's `…/cluster/NAME` is accepted, as real GKE accepts it."""
        assert gke.ClusterRef("p", "l", "c") == gke.parse_cluster_name(
            "projects/p/locations/l/cluster/c"
        )

    def test_zonal_name_keeps_its_collection(self) -> None:
        """A `zones/` name is remembered so errors echo the caller's form."""
        ref = gke.parse_cluster_name("projects/p/zones/us-central1-c/clusters/c")

        assert ref.path == "projects/p/zones/us-central1-c/clusters/c"

    def test_deprecated_fields(self) -> None:
        """Without a name, project_id, zone and cluster_id name the cluster."""
        ref = gke.parse_cluster_name("", project_id="p", zone="us-east1-b", cluster_id="c")

        assert gke.ClusterRef("p", "us-east1-b", "c", "zones") == ref

    def test_bare_name_needs_cluster_id(self) -> None:
        """A name without `/` names nothing: GKE asks for cluster_id (its own wording)."""
        with pytest.raises(ValueError, match="'cluster_id' or cluster in 'name' must be specified"):
            gke.parse_cluster_name("mycluster", project_id="p", zone="z")

    @pytest.mark.parametrize(
        "name",
        [
            "a/b",
            "projects//locations/l/clusters/c",
            "projects/p/regions/r/clusters/c",
            "projects/p/locations/l/clusters/c/nodePools/x",
            "projects/p/locations/l/nodes/c",
        ],
    )
    def test_malformed_names_name_the_field(self, name: str) -> None:
        """A malformed name is refused with a message naming the `name` field."""
        with pytest.raises(ValueError, match='field "name"'):
            gke.parse_cluster_name(name)

    def test_parent(self) -> None:
        """A parent gives project and location; `-` is kept for 'all locations'."""
        assert gke.ParentRef("p", "-") == gke.parse_parent("projects/p/locations/-")
        assert gke.ParentRef("p", "-", "zones") == gke.parse_parent("", project_id="p", zone="-")

    def test_parent_with_a_cluster_is_malformed(self) -> None:
        """A cluster name is not a parent."""
        with pytest.raises(ValueError, match='field "parent"'):
            gke.parse_parent("projects/p/locations/l/clusters/c")

    def test_missing_parent(self) -> None:
        """An empty request asks for the project first."""
        with pytest.raises(ValueError, match="'project_id' or project in 'parent'"):
            gke.parse_parent("")

    def test_locations(self) -> None:
        """Regions and zones are known; other words are not, unless the world uses them."""
        assert gke.location_exists("us-central1")
        assert gke.location_exists("northamerica-northeast1-b")
        assert not gke.location_exists("moon-base")
        assert gke.location_exists("moon-base", ["moon-base"])


segment = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/"), min_size=1)


class TestNameProperties:
    @given(
        project=segment,
        location=segment,
        cluster=segment,
        collection=st.sampled_from(["locations", "zones"]),
        keyword=st.sampled_from(["clusters", "cluster"]),
    )
    def test_round_trip(
        self, project: str, location: str, cluster: str, collection: str, keyword: str
    ) -> None:
        """Every well-formed name parses back to its parts."""
        name = f"projects/{project}/{collection}/{location}/{keyword}/{cluster}"

        ref = gke.parse_cluster_name(name)

        assert (project, location, cluster, collection) == (
            ref.project,
            ref.location,
            ref.cluster,
            ref.collection,
        )
        assert gke.parse_cluster_name(ref.path) == ref

    @given(name=st.text(), project_id=st.text(), zone=st.text(), cluster_id=st.text())
    def test_any_input_parses_or_names_a_field(
        self, name: str, project_id: str, zone: str, cluster_id: str
    ) -> None:
        """Any request either names a cluster with clean parts or fails naming a field."""
        try:
            ref = gke.parse_cluster_name(
                name, project_id=project_id, zone=zone, cluster_id=cluster_id
            )
        except ValueError as exc:
            message = str(exc)
        else:
            parts = (ref.project, ref.location, ref.cluster)
            assert all(part and "/" not in part for part in parts)
            return
        assert any(f in message for f in ("'name'", '"name"', "project_id", "zone", "cluster_id"))

    @given(project=segment, location=segment, cluster=segment, other=segment)
    def test_name_wins_over_deprecated_fields(
        self, project: str, location: str, cluster: str, other: str
    ) -> None:
        """Parts spelled in `name` take precedence over the deprecated fields."""
        ref = gke.parse_cluster_name(
            f"projects/{project}/locations/{location}/clusters/{cluster}",
            project_id=other,
            zone=other,
            cluster_id=other,
        )

        assert (project, location, cluster) == (ref.project, ref.location, ref.cluster)

    @given(project=segment, location=segment)
    def test_parent_round_trip(self, project: str, location: str) -> None:
        """Every well-formed parent parses back to its parts."""
        ref = gke.parse_parent(f"projects/{project}/locations/{location}")

        assert gke.ParentRef(project, location) == ref


class TestApiError:
    def test_rest_body_shape(self) -> None:
        """The JSON error has code, message, legacy errors, status and an ErrorInfo detail."""
        error = googleapi.consumer_invalid("nope", gke.SERVICE)

        body = json.loads(error.rest_response().body)

        assert list(body["error"]) == ["code", "message", "errors", "status", "details"]
        assert body["error"]["status"] == "PERMISSION_DENIED"
        assert body["error"]["errors"][0]["reason"] == "forbidden"
        detail = body["error"]["details"][0]
        assert detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
        assert detail["reason"] == "CONSUMER_INVALID"
        assert detail["metadata"]["consumer"] == "projects/nope"

    def test_grpc_status_details(self) -> None:
        """The gRPC details trailer decodes to the same code, message and ErrorInfo."""
        error = googleapi.consumer_invalid("nope", gke.SERVICE)

        status = status_pb2.Status.FromString(error.grpc_status_details())
        info = error_details_pb2.ErrorInfo()
        status.details[0].Unpack(info)

        assert status.code == 7
        assert error.message == status.message
        assert info.reason == "CONSUMER_INVALID"

    def test_not_found_has_no_detail(self) -> None:
        """A plain service error carries no details list."""
        body = json.loads(googleapi.ApiError(404, "Not found: x.").rest_response().body)

        assert "details" not in body["error"]
        assert body["error"]["status"] == "NOT_FOUND"
