"""The emulated GKE API against the real clients: google-auth's REST session and the gRPC ClusterManagerClient."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import google.auth.compute_engine
import grpc
import pytest
import requests
from google.api_core import exceptions
from google.auth.credentials import Credentials as BaseCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import container_v1
from google.cloud.container_v1.services.cluster_manager.transports import (
    ClusterManagerGrpcTransport,
)
from google.oauth2.credentials import Credentials

from emulator.faults import parse_fault
from emulator.testing import PointGoogleAuth, RunningEmulator
from emulator.world import Principal

pytestmark = pytest.mark.integration

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"
NO_GRANTS = "no-grants@mesh-demo.iam.gserviceaccount.com"
OUTSIDER = "outsider@other-project.iam.gserviceaccount.com"
ISTIO = "projects/mesh-demo/locations/us-central1-c/clusters/istio"


def static_credentials(token: str) -> BaseCredentials:
    """Credentials that send `token` as is and cannot refresh."""
    return Credentials(token)  # type: ignore[no-untyped-call]


def credentials_for(
    emu: RunningEmulator, email: str, scopes: tuple[str, ...] = (CLOUD_PLATFORM,)
) -> BaseCredentials:
    """Credentials carrying a world access token issued straight to `email`."""
    token = emu.world.tokens.issue_access_token(
        Principal.for_email(email), scopes, now=emu.world.clock(), lifetime=3600
    )
    return static_credentials(token.token)


def session_for(
    emu: RunningEmulator, credentials: BaseCredentials, *, refresh: bool = True
) -> AuthorizedSession:
    """A google-auth session trusting the world CA; `refresh=False` shows a 401 as is."""
    codes = (401,) if refresh else ()
    session = AuthorizedSession(credentials, refresh_status_codes=codes)  # type: ignore[no-untyped-call]
    session.verify = str(emu.ca_file)
    return session


def strict_session(
    emu: RunningEmulator, email: str, scopes: tuple[str, ...] = (CLOUD_PLATFORM,)
) -> AuthorizedSession:
    """A session for `email` that shows a 401 as is: static credentials cannot refresh."""
    return session_for(emu, credentials_for(emu, email, scopes), refresh=False)


def grpc_client(
    emu: RunningEmulator, credentials: BaseCredentials
) -> container_v1.ClusterManagerClient:
    transport = ClusterManagerGrpcTransport(
        host=emu.hostport("container"),
        credentials=credentials,
        ssl_channel_credentials=grpc.ssl_channel_credentials(emu.ca_file.read_bytes()),
    )
    return container_v1.ClusterManagerClient(transport=transport)


def metadata_of(
    emu: RunningEmulator, point_google_auth: PointGoogleAuth
) -> google.auth.compute_engine.Credentials:
    point_google_auth(emu, "fortio-0")
    return google.auth.compute_engine.Credentials()  # type: ignore[no-untyped-call]


@pytest.fixture
def metadata_credentials(
    emu: RunningEmulator, point_google_auth: PointGoogleAuth
) -> google.auth.compute_engine.Credentials:
    """Credentials of the Cloud Run instance fortio-0, fetched from its metadata server."""
    return metadata_of(emu, point_google_auth)


@pytest.fixture
def fortio(emu: RunningEmulator) -> Iterator[AuthorizedSession]:
    with session_for(emu, credentials_for(emu, FORTIO)) as session:
        yield session


def api(emu: RunningEmulator, path: str) -> str:
    return f"{emu.url('container')}/v1/{path}"


class TestRestList:
    def test_all_locations_through_metadata_credentials(
        self, emu: RunningEmulator, metadata_credentials: BaseCredentials
    ) -> None:
        """A Cloud Run instance's own identity lists both demo clusters and nothing of other projects."""
        with session_for(emu, metadata_credentials) as session:
            response = session.get(api(emu, "projects/mesh-demo/locations/-/clusters"))

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        clusters = response.json()["clusters"]
        assert sorted(c["name"] for c in clusters) == ["istio", "plain"]
        assert {c["selfLink"].split("/projects/")[1].split("/")[0] for c in clusters} == {
            "mesh-demo"
        }

    def test_one_location(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """Listing one location returns only the clusters there."""
        response = fortio.get(api(emu, "projects/mesh-demo/locations/europe-west1/clusters"))

        assert response.status_code == 200
        assert [c["name"] for c in response.json()["clusters"]] == ["plain"]

    def test_empty_location_is_an_empty_object(
        self, emu: RunningEmulator, fortio: AuthorizedSession
    ) -> None:
        """A location without clusters answers `{}`, as proto JSON omits empty lists."""
        response = fortio.get(api(emu, "projects/mesh-demo/locations/asia-east1/clusters"))

        assert response.status_code == 200
        assert response.json() == {}

    def test_zonal_form_with_dash(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """The older `zones/-` form lists every location too."""
        response = fortio.get(api(emu, "projects/mesh-demo/zones/-/clusters"))

        assert response.status_code == 200
        assert sorted(c["name"] for c in response.json()["clusters"]) == ["istio", "plain"]

    def test_unknown_location(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """A location GKE does not know is a 400 naming it."""
        response = fortio.get(api(emu, "projects/mesh-demo/locations/atlantis/clusters"))

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert error["message"] == 'Location "atlantis" does not exist.'


class TestRestGet:
    def test_fields_krun_uses(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """GetCluster carries endpoint, the world CA, labels and identity as krun and gcloud read them."""
        response = fortio.get(api(emu, ISTIO))

        assert response.status_code == 200
        cluster = response.json()
        assert cluster["name"] == "istio"
        assert cluster["location"] == "us-central1-c"
        assert cluster["zone"] == "us-central1-c"
        assert cluster["locations"] == ["us-central1-c"]
        # The emulated API server's address: GKE discovery leads to it.
        assert cluster["endpoint"] == emu.hostport("kube/mesh-demo/us-central1-c/istio")
        ca = base64.b64decode(cluster["masterAuth"]["clusterCaCertificate"])
        assert ca == emu.world.pki.root_pem
        assert cluster["resourceLabels"]["mesh_id"] == "proj-123456789012"
        assert cluster["status"] == "RUNNING"
        assert cluster["workloadIdentityConfig"] == {"workloadPool": "mesh-demo.svc.id.goog"}
        assert cluster["selfLink"] == (
            "https://container.googleapis.com/v1/projects/mesh-demo/zones/us-central1-c/clusters/istio"
        )
        assert cluster["currentMasterVersion"] == cluster["currentNodeVersion"]
        for key in (
            "initialClusterVersion",
            "createTime",
            "network",
            "subnetwork",
            "clusterIpv4Cidr",
            "servicesIpv4Cidr",
            "labelFingerprint",
            "id",
            "etag",
        ):
            assert cluster[key], key
        assert cluster["nodePools"][0]["name"] == "default-pool"

    def test_zonal_form(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """The zonal path returns the same cluster as the locations path."""
        zonal = fortio.get(api(emu, "projects/mesh-demo/zones/us-central1-c/clusters/istio"))
        located = fortio.get(api(emu, ISTIO))

        assert zonal.status_code == 200
        assert zonal.json() == located.json()

    def test_unknown_cluster(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """An unknown cluster, asked by someone allowed to look, is a 404 naming it."""
        response = fortio.get(api(emu, "projects/mesh-demo/locations/us-central1-c/clusters/nope"))

        assert response.status_code == 404
        error = response.json()["error"]
        assert error["status"] == "NOT_FOUND"
        assert (
            error["message"]
            == "Not found: projects/mesh-demo/locations/us-central1-c/clusters/nope."
        )
        assert error["errors"][0]["reason"] == "notFound"

    def test_unknown_cluster_in_zonal_form(
        self, emu: RunningEmulator, fortio: AuthorizedSession
    ) -> None:
        """The 404 echoes the zonal form the caller used."""
        response = fortio.get(api(emu, "projects/mesh-demo/zones/us-central1-a/clusters/nope"))

        assert response.status_code == 404
        assert (
            response.json()["error"]["message"]
            == "Not found: projects/mesh-demo/zones/us-central1-a/clusters/nope."
        )


class TestRestAuth:
    def test_no_token(self, emu: RunningEmulator) -> None:
        """Without credentials the front end answers 401 CREDENTIALS_MISSING and a Bearer challenge."""
        response = requests.get(
            api(emu, "projects/mesh-demo/locations/-/clusters"), verify=str(emu.ca_file), timeout=10
        )

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="https://accounts.google.com/"'
        error = response.json()["error"]
        assert error["status"] == "UNAUTHENTICATED"
        assert error["message"].startswith("Request is missing required authentication credential.")
        assert error["details"][0]["reason"] == "CREDENTIALS_MISSING"
        assert error["details"][0]["metadata"] == {
            "method": "google.container.v1.ClusterManager.ListClusters",
            "service": "container.googleapis.com",
        }

    def test_unknown_token(self, emu: RunningEmulator) -> None:
        """A token the world never issued is a 401 invalid_token."""
        session = session_for(emu, static_credentials("ya29.not-a-real-token"), refresh=False)

        response = session.get(api(emu, ISTIO))

        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert response.json()["error"]["message"].startswith(
            "Request had invalid authentication credentials."
        )

    def test_expired_token(self, fresh_emu: RunningEmulator) -> None:
        """A token that was good becomes a 401 once the world clock passes its expiry."""
        session = strict_session(fresh_emu, FORTIO)
        url = api(fresh_emu, ISTIO)
        assert session.get(url).status_code == 200

        fresh_emu.clock.advance(3601)

        response = session.get(url)
        assert response.status_code == 401
        assert response.json()["error"]["status"] == "UNAUTHENTICATED"

    def test_expired_metadata_token_is_refreshed(
        self, fresh_emu: RunningEmulator, point_google_auth: PointGoogleAuth
    ) -> None:
        """Metadata credentials recover from a 401 by fetching a new token, as in production."""
        session = session_for(fresh_emu, metadata_of(fresh_emu, point_google_auth))
        url = api(fresh_emu, ISTIO)
        assert session.get(url).status_code == 200
        first_token = session.credentials.token

        fresh_emu.clock.advance(3601)

        assert session.get(url).status_code == 200
        assert session.credentials.token != first_token

    def test_insufficient_scopes(self, emu: RunningEmulator) -> None:
        """A token without the cloud-platform scope is refused with 403 ACCESS_TOKEN_SCOPE_INSUFFICIENT."""
        session = strict_session(emu, FORTIO, ("https://www.googleapis.com/auth/userinfo.email",))

        response = session.get(api(emu, ISTIO))

        assert response.status_code == 403
        assert response.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"

    @pytest.mark.parametrize("email", [NO_GRANTS, OUTSIDER])
    def test_no_role(self, emu: RunningEmulator, email: str) -> None:
        """A principal without a container role on the project is refused with 403."""
        session = strict_session(emu, email)

        listed = session.get(api(emu, "projects/mesh-demo/locations/-/clusters"))
        got = session.get(api(emu, ISTIO))

        assert listed.status_code == 403
        assert listed.json()["error"]["message"] == (
            'Required "container.clusters.list" permission(s) for "projects/mesh-demo".'
        )
        assert listed.json()["error"]["errors"][0]["reason"] == "forbidden"
        assert got.status_code == 403
        assert got.json()["error"]["message"] == (
            f'Required "container.clusters.get" permission(s) for "{ISTIO}".'
        )

    def test_other_project(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """A mesh-demo identity sees nothing of other-project, not even whether a cluster exists."""
        listed = fortio.get(api(emu, "projects/other-project/locations/-/clusters"))
        existing = fortio.get(
            api(emu, "projects/other-project/locations/us-east1-b/clusters/secret")
        )
        missing = fortio.get(api(emu, "projects/other-project/locations/us-east1-b/clusters/nope"))

        assert listed.status_code == 403
        assert existing.status_code == 403
        assert missing.status_code == 403
        assert listed.json()["error"]["status"] == "PERMISSION_DENIED"

    def test_missing_project(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """A project that does not exist is a 403 CONSUMER_INVALID, never a 404."""
        response = fortio.get(api(emu, "projects/no-such-project/locations/-/clusters"))

        assert response.status_code == 403
        error = response.json()["error"]
        assert error["message"] == "Permission denied on resource project no-such-project."
        assert error["details"][0]["reason"] == "CONSUMER_INVALID"
        assert error["details"][0]["metadata"]["consumer"] == "projects/no-such-project"

    def test_quota_project(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """An existing x-goog-user-project is accepted; one that does not exist is a 400."""
        url = api(emu, ISTIO)

        good = fortio.get(url, headers={"x-goog-user-project": "mesh-demo"})
        bad = fortio.get(url, headers={"x-goog-user-project": "no-such-project"})

        assert good.status_code == 200
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "User project specified in the request is invalid."

    def test_quota_project_does_not_reveal_a_missing_project(
        self, emu: RunningEmulator, fortio: AuthorizedSession
    ) -> None:
        """With a valid quota project, a missing resource project is an ordinary IAM 403."""
        response = fortio.get(
            api(emu, "projects/no-such-project/locations/-/clusters"),
            headers={"x-goog-user-project": "mesh-demo"},
        )

        assert response.status_code == 403
        assert "container.clusters.list" in response.json()["error"]["message"]


class TestRestFaults:
    def test_injected_503_once(self, emu: RunningEmulator, fortio: AuthorizedSession) -> None:
        """A one-shot 503 reaches the REST caller as Google JSON; the next call succeeds."""
        emu.world.faults.add(
            parse_fault(
                {"service": "container", "kind": "status", "status": 503, "times": 1},
                where="t",
                now=emu.world.clock(),
            )
        )
        url = api(emu, "projects/mesh-demo/locations/-/clusters")

        failed = fortio.get(url)
        recovered = fortio.get(url)

        assert failed.status_code == 503
        assert failed.json()["error"]["status"] == "UNAVAILABLE"
        assert recovered.status_code == 200


@pytest.fixture
def client(emu: RunningEmulator) -> container_v1.ClusterManagerClient:
    return grpc_client(emu, credentials_for(emu, FORTIO))


class TestGrpc:
    def test_list_clusters(self, client: container_v1.ClusterManagerClient) -> None:
        """ListClusters with a `-` parent returns both demo clusters."""
        response = client.list_clusters(parent="projects/mesh-demo/locations/-")

        assert sorted(c.name for c in response.clusters) == ["istio", "plain"]
        assert list(response.missing_zones) == []

    def test_list_clusters_deprecated_fields(
        self, client: container_v1.ClusterManagerClient
    ) -> None:
        """The deprecated project_id and zone still select the clusters."""
        response = client.list_clusters(
            request=container_v1.ListClustersRequest(project_id="mesh-demo", zone="europe-west1")
        )

        assert [c.name for c in response.clusters] == ["plain"]

    def test_get_cluster(
        self, emu: RunningEmulator, client: container_v1.ClusterManagerClient
    ) -> None:
        """GetCluster by name carries endpoint, CA and the mesh label."""
        cluster = client.get_cluster(name=ISTIO)

        assert cluster.endpoint == emu.hostport("kube/mesh-demo/us-central1-c/istio")
        assert (
            base64.b64decode(cluster.master_auth.cluster_ca_certificate) == emu.world.pki.root_pem
        )
        assert cluster.resource_labels["mesh_id"] == "proj-123456789012"

    def test_original_krun_singular_name(self, client: container_v1.ClusterManagerClient) -> None:
        """The original krun's `…/cluster/NAME` finds the cluster, as on real GKE."""
        cluster = client.get_cluster(
            name="projects/mesh-demo/locations/us-central1-c/cluster/istio"
        )

        assert cluster.name == "istio"

    def test_get_cluster_deprecated_fields(self, client: container_v1.ClusterManagerClient) -> None:
        """project_id, zone and cluster_id still name a cluster."""
        cluster = client.get_cluster(
            request=container_v1.GetClusterRequest(
                project_id="mesh-demo", zone="europe-west1", cluster_id="plain"
            )
        )

        assert cluster.location == "europe-west1"

    def test_grpc_and_rest_agree(
        self,
        emu: RunningEmulator,
        client: container_v1.ClusterManagerClient,
        fortio: AuthorizedSession,
    ) -> None:
        """The same cluster comes back over gRPC and REST, field for field."""
        over_grpc = client.get_cluster(name=ISTIO)
        over_rest = container_v1.Cluster.from_json(fortio.get(api(emu, ISTIO)).text)

        assert container_v1.Cluster.serialize(over_grpc) == container_v1.Cluster.serialize(
            over_rest
        )

    def test_not_found(self, client: container_v1.ClusterManagerClient) -> None:
        """An unknown cluster raises NotFound naming it."""
        with pytest.raises(
            exceptions.NotFound,
            match="Not found: projects/mesh-demo/locations/us-central1-c/clusters/nope",
        ):
            client.get_cluster(name="projects/mesh-demo/locations/us-central1-c/clusters/nope")

    def test_other_project(self, client: container_v1.ClusterManagerClient) -> None:
        """Another project's clusters raise PermissionDenied."""
        with pytest.raises(exceptions.PermissionDenied, match=r"container\.clusters\.list"):
            client.list_clusters(parent="projects/other-project/locations/-")

    def test_no_role(self, emu: RunningEmulator) -> None:
        """A principal without a role raises PermissionDenied on get."""
        client = grpc_client(emu, credentials_for(emu, NO_GRANTS))

        with pytest.raises(exceptions.PermissionDenied, match=r"container\.clusters\.get"):
            client.get_cluster(name=ISTIO)

    def test_missing_project_carries_error_info(
        self, client: container_v1.ClusterManagerClient
    ) -> None:
        """The CONSUMER_INVALID ErrorInfo travels in grpc-status-details-bin, as api_core reads it."""
        with pytest.raises(exceptions.PermissionDenied) as caught:
            client.list_clusters(parent="projects/no-such-project/locations/-")

        assert caught.value.reason == "CONSUMER_INVALID"
        assert caught.value.domain == "googleapis.com"
        assert caught.value.metadata["consumer"] == "projects/no-such-project"

    def test_unknown_token(self, emu: RunningEmulator) -> None:
        """A token the world never issued raises Unauthenticated."""
        client = grpc_client(emu, static_credentials("ya29.not-a-real-token"))

        with pytest.raises(exceptions.Unauthenticated) as caught:
            client.list_clusters(parent="projects/mesh-demo/locations/-")

        assert caught.value.reason == "ACCESS_TOKEN_TYPE_UNSUPPORTED"

    def test_expired_token(self, fresh_emu: RunningEmulator) -> None:
        """A token past its expiry in world time raises Unauthenticated."""
        client = grpc_client(fresh_emu, credentials_for(fresh_emu, FORTIO))
        assert client.get_cluster(name=ISTIO).name == "istio"

        fresh_emu.clock.advance(3601)

        with pytest.raises(exceptions.Unauthenticated):
            client.get_cluster(name=ISTIO)

    @pytest.mark.parametrize(
        ("name", "field"),
        [
            ("projects/mesh-demo/regions/us-central1/clusters/istio", '"name"'),
            ("istio", "'cluster_id' or cluster in 'name'"),
        ],
    )
    def test_malformed_name(
        self, client: container_v1.ClusterManagerClient, name: str, field: str
    ) -> None:
        """A malformed name raises InvalidArgument naming the field."""
        with pytest.raises(exceptions.InvalidArgument, match=field):
            client.get_cluster(
                request=container_v1.GetClusterRequest(name=name, project_id="mesh-demo", zone="-")
            )

    def test_metadata_credentials(
        self, emu: RunningEmulator, metadata_credentials: BaseCredentials
    ) -> None:
        """The gRPC client works with the instance's metadata-server credentials."""
        client = grpc_client(emu, metadata_credentials)

        response = client.list_clusters(parent="projects/mesh-demo/locations/-")

        assert len(response.clusters) == 2


class TestGrpcFaults:
    def add_503(self, emu: RunningEmulator) -> None:
        emu.world.faults.add(
            parse_fault(
                {"service": "container", "kind": "status", "status": 503, "times": 1},
                where="t",
                now=emu.world.clock(),
            )
        )

    def test_without_retry(
        self, emu: RunningEmulator, client: container_v1.ClusterManagerClient
    ) -> None:
        """With retries off, a one-shot 503 surfaces as ServiceUnavailable."""
        self.add_503(emu)

        with pytest.raises(exceptions.ServiceUnavailable, match="injected fault"):
            client.list_clusters(parent="projects/mesh-demo/locations/-", retry=None)

        assert len(client.list_clusters(parent="projects/mesh-demo/locations/-").clusters) == 2

    def test_default_retry_hides_it(
        self, emu: RunningEmulator, client: container_v1.ClusterManagerClient
    ) -> None:
        """The client's default retry (UNAVAILABLE is retryable) absorbs a one-shot 503."""
        self.add_503(emu)

        response = client.get_cluster(name=ISTIO)

        assert response.name == "istio"
        assert emu.world.faults.active(emu.world.clock()) == []


def test_error_body_is_json_for_an_unknown_path(
    emu: RunningEmulator, fortio: AuthorizedSession
) -> None:
    """A path the API does not have is a Google JSON 404, not an HTML page."""
    response = fortio.get(api(emu, "projects/mesh-demo/locations/us-central1-c/cluster/istio"))

    assert response.status_code == 404
    assert json.loads(response.text)["error"]["code"] == 404
