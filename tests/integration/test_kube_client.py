"""The emulated Kubernetes API against the official `kubernetes` Python client."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from emulator.kube.cluster import kube_cluster
from emulator.kube.kubeconfig import google_kubeconfig
from emulator.kube.manifests import MANIFESTS, install_istio_crds
from emulator.testing import RunningEmulator, start
from emulator.world import Cluster, Principal

pytestmark = pytest.mark.integration

FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"
ISTIO_KEY = "kube/mesh-demo/us-central1-c/istio"


@pytest.fixture(scope="module")
def kemu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    """The demo world with the Istio CRDs and the repository's manifests in cluster `istio`."""
    with start(tmp_path_factory.mktemp("kube")) as running:
        kube = kube_cluster(running.world, istio_cluster(running))
        install_istio_crds(kube)
        for name in ("cluster-rbac", "rbac", "istio-system-discovery-rbac", "service"):
            kube.apply_file(MANIFESTS / "hgate" / f"{name}.yaml")
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "mesh-env", "namespace": "istio-system"},
                "data": {"PROJECT_ID": "mesh-demo"},
            }
        )
        yield running


def istio_cluster(emu: RunningEmulator) -> Cluster:
    return emu.world.cluster("mesh-demo", "us-central1-c", "istio")


def api_client(path: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture(scope="module")
def admin(kemu: RunningEmulator) -> client.ApiClient:
    return api_client(kemu.kubeconfig(ISTIO_KEY))


@pytest.fixture(scope="module")
def fortio(kemu: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    """A client authenticated as the Cloud Run service's Google account."""
    path = tmp_path_factory.mktemp("fortio") / "kubeconfig"
    return api_client(google_kubeconfig(kemu.world, istio_cluster(kemu), FORTIO, path))


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def bearer_client(emu: RunningEmulator, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    cluster = istio_cluster(emu)
    configuration.host = f"https://{cluster.endpoint}:{cluster.endpoint_port}"
    configuration.ssl_ca_cert = str(emu.ca_file)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


class TestCrud:
    def test_configmap_lifecycle(self, admin: client.ApiClient) -> None:
        """A ConfigMap is created, read, listed by label, replaced, patched and deleted."""
        core = client.CoreV1Api(admin)
        body = {"metadata": {"name": "cm-1", "labels": {"app": "x"}}, "data": {"a": "1"}}
        created = core.create_namespaced_config_map("default", body)
        assert created.metadata.uid
        assert created.metadata.creation_timestamp
        assert {"a": "1"} == core.read_namespaced_config_map("cm-1", "default").data
        listed = core.list_namespaced_config_map("default", label_selector="app=x")
        assert ["cm-1"] == [i.metadata.name for i in listed.items]
        assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
        created.data = {"a": "2"}
        replaced = core.replace_namespaced_config_map("cm-1", "default", created)
        assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
        patched = core.patch_namespaced_config_map("cm-1", "default", {"data": {"b": "3"}})
        assert {"a": "2", "b": "3"} == patched.data
        core.delete_namespaced_config_map("cm-1", "default")
        with pytest.raises(ApiException) as caught:
            core.read_namespaced_config_map("cm-1", "default")
        assert 404 == caught.value.status

    def test_stale_update_conflicts(self, admin: client.ApiClient) -> None:
        """A replace carrying an old resourceVersion is a 409 Conflict Status."""
        core = client.CoreV1Api(admin)
        first = core.create_namespaced_config_map("default", {"metadata": {"name": "cm-stale"}})
        core.patch_namespaced_config_map("cm-stale", "default", {"data": {"x": "y"}})
        with pytest.raises(ApiException) as caught:
            core.replace_namespaced_config_map("cm-stale", "default", first)
        body = status_of(caught.value)
        assert 409 == caught.value.status
        assert "Conflict" == body["reason"]
        assert {"name": "cm-stale", "kind": "configmaps"} == body["details"]
        assert body["message"].startswith('Operation cannot be fulfilled on configmaps "cm-stale"')

    def test_secret_service_account_and_namespace(self, admin: client.ApiClient) -> None:
        """Secrets turn stringData into base64 data; a new namespace gets its default account."""
        core = client.CoreV1Api(admin)
        core.create_namespace({"metadata": {"name": "crud"}})
        assert "default" == core.read_namespaced_service_account("default", "crud").metadata.name
        root = core.read_namespaced_config_map("kube-root-ca.crt", "crud").data["ca.crt"]
        assert "BEGIN CERTIFICATE" in root
        secret = core.create_namespaced_secret(
            "crud", {"metadata": {"name": "s"}, "stringData": {"k": "v"}}
        )
        assert "Opaque" == secret.type
        assert base64.b64encode(b"v").decode() == secret.data["k"]
        core.create_namespaced_service_account("crud", {"metadata": {"name": "robot"}})
        core.delete_namespace("crud")
        with pytest.raises(ApiException) as caught:
            core.read_namespaced_secret("s", "crud")
        assert 404 == caught.value.status
        with pytest.raises(ApiException) as caught:
            core.read_namespace("crud")
        assert 404 == caught.value.status

    def test_services_endpoints_pods(self, admin: client.ApiClient) -> None:
        """Services get a cluster IP and defaults; Endpoints and Pods round-trip."""
        core = client.CoreV1Api(admin)
        service = core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "name": "http"}]},
            },
        )
        assert service.spec.cluster_ip.startswith("10.12.")
        assert "ClusterIP" == service.spec.type
        assert 80 == service.spec.ports[0].target_port
        core.create_namespaced_endpoints(
            "default",
            {
                "metadata": {"name": "web"},
                "subsets": [{"addresses": [{"ip": "10.8.0.5"}], "ports": [{"port": 80}]}],
            },
        )
        pod = core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "web-0", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/web:1"}]},
            },
        )
        assert "Pending" == pod.status.phase
        assert "default" == pod.spec.service_account_name
        listed = core.list_namespaced_pod("default", field_selector="status.phase=Pending")
        assert ["web-0"] == [p.metadata.name for p in listed.items]
        core.delete_namespaced_pod("web-0", "default")
        core.delete_namespaced_endpoints("web", "default")
        core.delete_namespaced_service("web", "default")

    def test_endpointslices_deployments_and_rbac(self, admin: client.ApiClient) -> None:
        """EndpointSlices, Deployments and the four RBAC kinds are created, read and deleted."""
        discovery = client.DiscoveryV1Api(admin)
        discovery.create_namespaced_endpoint_slice(
            "default",
            {
                "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.8.0.5"]}],
                "ports": [{"port": 80, "name": "http"}],
            },
        )
        slices = discovery.list_namespaced_endpoint_slice(
            "default", label_selector="kubernetes.io/service-name=web"
        )
        assert ["10.8.0.5"] == slices.items[0].endpoints[0].addresses
        apps = client.AppsV1Api(admin)
        deployment = apps.create_namespaced_deployment(
            "default",
            {
                "metadata": {"name": "d"},
                "spec": {
                    "selector": {"matchLabels": {"app": "d"}},
                    "template": {
                        "metadata": {"labels": {"app": "d"}},
                        "spec": {"containers": [{"name": "c", "image": "example.invalid/d:1"}]},
                    },
                },
            },
        )
        assert 1 == deployment.metadata.generation
        patched = apps.patch_namespaced_deployment("d", "default", {"spec": {"replicas": 3}})
        assert 2 == patched.metadata.generation
        rbac = client.RbacAuthorizationV1Api(admin)
        rule = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
        ref = {"apiGroup": "rbac.authorization.k8s.io", "name": "r"}
        subject = [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]
        rbac.create_namespaced_role("default", {"metadata": {"name": "r"}, "rules": rule})
        rbac.create_namespaced_role_binding(
            "default",
            {"metadata": {"name": "rb"}, "roleRef": {**ref, "kind": "Role"}, "subjects": subject},
        )
        rbac.create_cluster_role({"metadata": {"name": "cr-test"}, "rules": rule})
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": "crb-test"},
                "roleRef": {**ref, "kind": "ClusterRole", "name": "cr-test"},
                "subjects": subject,
            }
        )
        assert ["pods"] == rbac.read_namespaced_role("r", "default").rules[0].resources
        rbac.delete_namespaced_role_binding("rb", "default")
        rbac.delete_namespaced_role("r", "default")
        rbac.delete_cluster_role_binding("crb-test")
        rbac.delete_cluster_role("cr-test")
        apps.delete_namespaced_deployment("d", "default")
        discovery.delete_namespaced_endpoint_slice("web-abc", "default")
        assert [] == rbac.list_namespaced_role("default").items

    def test_custom_resources_of_installed_crds(self, admin: client.ApiClient) -> None:
        """Every Istio kind of the shipped CRDs is served; CRs take merge patches, not strategic."""
        extensions = client.ApiextensionsV1Api(admin)
        names = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
        assert "workloadentries.networking.istio.io" in names
        assert "peerauthentications.security.istio.io" in names
        custom = client.CustomObjectsApi(admin)
        kinds = [
            ("networking.istio.io", "v1", "serviceentries", "ServiceEntry"),
            ("networking.istio.io", "v1", "workloadentries", "WorkloadEntry"),
            ("networking.istio.io", "v1beta1", "workloadgroups", "WorkloadGroup"),
            ("networking.istio.io", "v1alpha3", "virtualservices", "VirtualService"),
            ("networking.istio.io", "v1", "destinationrules", "DestinationRule"),
            ("networking.istio.io", "v1", "gateways", "Gateway"),
            ("networking.istio.io", "v1", "sidecars", "Sidecar"),
            ("security.istio.io", "v1", "peerauthentications", "PeerAuthentication"),
        ]
        for group, version, plural, kind in kinds:
            body = {
                "apiVersion": f"{group}/{version}",
                "kind": kind,
                "metadata": {"name": "x"},
                "spec": {"anything": {"goes": [1, 2]}},
            }
            created = custom.create_namespaced_custom_object(
                group, version, "default", plural, body
            )
            assert 1 == created["metadata"]["generation"]
            patched = custom.patch_namespaced_custom_object(
                group, version, "default", plural, "x", {"spec": {"more": True}}
            )
            assert {"anything": {"goes": [1, 2]}, "more": True} == patched["spec"]
            assert 2 == patched["metadata"]["generation"]
            listed = custom.list_namespaced_custom_object(group, version, "default", plural)
            assert [f"{group}/{version}"] == [i["apiVersion"] for i in listed["items"]]
            custom.delete_namespaced_custom_object(group, version, "default", plural, "x")

    def test_list_pages_with_limit_and_continue(self, admin: client.ApiClient) -> None:
        """`limit` cuts a list and `continue` resumes it, as a paging client expects."""
        core = client.CoreV1Api(admin)
        for index in range(5):
            core.create_namespaced_config_map(
                "kube-public", {"metadata": {"name": f"page-{index}", "labels": {"page": "y"}}}
            )
        first = core.list_namespaced_config_map("kube-public", label_selector="page=y", limit=3)
        assert 2 == first.metadata.remaining_item_count
        rest = core.list_namespaced_config_map(
            "kube-public", label_selector="page=y", limit=3, _continue=first.metadata._continue
        )
        assert [f"page-{i}" for i in range(5)] == [
            i.metadata.name for i in first.items + rest.items
        ]
        assert rest.metadata._continue is None


class TestWatch:
    def test_watch_sees_changes_in_order(
        self, kemu: RunningEmulator, admin: client.ApiClient
    ) -> None:
        """A watch from a list's resourceVersion sees ADDED, MODIFIED, DELETED in order."""
        kube = kube_cluster(kemu.world, istio_cluster(kemu))
        watching = kube.store.watchers("configmaps")
        core = client.CoreV1Api(admin)
        start_rv = core.list_namespaced_config_map("default").metadata.resource_version
        done = threading.Event()

        def writer() -> None:
            core.create_namespaced_config_map(
                "default", {"metadata": {"name": "w", "labels": {"w": "1"}}}
            )
            core.patch_namespaced_config_map("w", "default", {"data": {"k": "v"}})
            core.delete_namespaced_config_map("w", "default")
            done.set()

        seen: list[tuple[str, str]] = []
        thread = threading.Thread(target=writer)
        stream = watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="w=1",
            resource_version=start_rv,
            timeout_seconds=10,
        )
        thread.start()
        for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                break
        thread.join(timeout=10)
        assert [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")] == seen
        stream.close()  # the client hangs up: the server ends the watch and drops its subscription
        deadline = time.monotonic() + 10
        while kube.store.watchers("configmaps") > watching and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watching == kube.store.watchers("configmaps")

    def test_too_old_resource_version_is_gone(
        self, kemu: RunningEmulator, admin: client.ApiClient
    ) -> None:
        """Resuming a watch below the retained history yields a 410 Expired ERROR event."""
        kube = kube_cluster(kemu.world, istio_cluster(kemu))
        core = client.CoreV1Api(admin)
        # Restoring a snapshot drops the history, exactly what etcd compaction does.
        snapshot = kemu.state_dir / "compact.json"
        kube.save(snapshot)
        kube.load(snapshot)
        with pytest.raises(ApiException) as caught:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version="1", timeout_seconds=5
            ):
                pass
        assert 410 == caught.value.status


class TestTokens:
    def test_token_request_then_review(
        self, admin: client.ApiClient, kemu: RunningEmulator
    ) -> None:
        """A TokenRequest's token passes a TokenReview for its audience and fails for another."""
        core = client.CoreV1Api(admin)
        request = core.create_namespaced_service_account_token(
            "default",
            "istio-system",
            {"spec": {"audiences": ["istio-ca"], "expirationSeconds": 900}},
        )
        token = request.status.token
        authn = client.AuthenticationV1Api(admin)
        good = authn.create_token_review({"spec": {"token": token, "audiences": ["istio-ca"]}})
        assert good.status.authenticated is True
        assert "system:serviceaccount:istio-system:default" == good.status.user.username
        assert {
            "system:serviceaccounts",
            "system:serviceaccounts:istio-system",
            "system:authenticated",
        } == set(good.status.user.groups)
        assert ["istio-ca"] == good.status.audiences
        bad = authn.create_token_review({"spec": {"token": token, "audiences": ["other"]}})
        assert not bad.status.authenticated
        assert "invalid bearer token" in bad.status.error
        api_aud = authn.create_token_review({"spec": {"token": token}})
        assert not api_aud.status.authenticated

    def test_token_verifies_against_served_jwks(
        self, admin: client.ApiClient, kemu: RunningEmulator
    ) -> None:
        """The minted JWT verifies with PyJWT against /openid/v1/jwks, with the audience and expiry asked."""
        core = client.CoreV1Api(admin)
        now = kemu.world.clock()
        token = core.create_namespaced_service_account_token(
            "default", "default", {"spec": {"audiences": ["aud-x"], "expirationSeconds": 1200}}
        ).status.token
        cluster = istio_cluster(kemu)
        base = f"https://{cluster.endpoint}:{cluster.endpoint_port}"
        headers = {"Authorization": f"Bearer {token_for_api(core)}"}
        discovered = requests.get(
            f"{base}/.well-known/openid-configuration",
            headers=headers,
            verify=str(kemu.ca_file),
            timeout=10,
        ).json()
        assert cluster.issuer == discovered["issuer"]
        keys = requests.get(
            discovered["jwks_uri"], headers=headers, verify=str(kemu.ca_file), timeout=10
        ).json()
        key = jwt.PyJWKSet.from_dict(keys)[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(
            token, key.key, algorithms=["RS256"], audience="aud-x", issuer=cluster.issuer
        )
        assert abs(claims["exp"] - (now + 1200)) <= 2
        assert "default" == claims["kubernetes.io"]["serviceaccount"]["name"]

    def test_short_expiration_is_invalid(self, admin: client.ApiClient) -> None:
        """expirationSeconds under ten minutes is a 422 naming the field."""
        core = client.CoreV1Api(admin)
        with pytest.raises(ApiException) as caught:
            core.create_namespaced_service_account_token(
                "default", "default", {"spec": {"expirationSeconds": 60}}
            )
        body = status_of(caught.value)
        assert 422 == body["code"]
        assert "Invalid" == body["reason"]
        assert "spec.expirationSeconds" == body["details"]["causes"][0]["field"]

    def test_service_account_token_authenticates_with_api_audience(
        self, kemu: RunningEmulator, admin: client.ApiClient
    ) -> None:
        """A token for the API audience calls the server as the service account; istio-ca's does not."""
        core = client.CoreV1Api(admin)
        sa = bearer_client(kemu, token_for_api(core))
        services = client.CoreV1Api(sa).list_namespaced_service("istio-system")
        assert "hgate" in [s.metadata.name for s in services.items]
        ca_only = core.create_namespaced_service_account_token(
            "default", "istio-system", {"spec": {"audiences": ["istio-ca"]}}
        ).status.token
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(bearer_client(kemu, ca_only)).list_namespaced_service("istio-system")
        assert 401 == caught.value.status


def token_for_api(core: client.CoreV1Api) -> str:
    """A token of istio-system/default for the API server itself (its default audience)."""
    token: str = core.create_namespaced_service_account_token(
        "default", "istio-system", {"spec": {}}
    ).status.token
    return token


class TestRbac:
    def test_google_account_reads_mesh_env(self, fortio: client.ApiClient) -> None:
        """A Google access token reads istio-system/mesh-env through istio-autoconf."""
        mesh_env = client.CoreV1Api(fortio).read_namespaced_config_map("mesh-env", "istio-system")
        assert {"PROJECT_ID": "mesh-demo"} == mesh_env.data

    def test_google_account_cannot_write_mesh_env(self, fortio: client.ApiClient) -> None:
        """Writing mesh-env is a 403 whose Status names user, verb, resource and namespace."""
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(fortio).patch_namespaced_config_map(
                "mesh-env", "istio-system", {"data": {"X": "1"}}
            )
        body = status_of(caught.value)
        assert {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": (
                f'configmaps "mesh-env" is forbidden: User "{FORTIO}" cannot patch resource '
                '"configmaps" in API group "" in the namespace "istio-system"'
            ),
            "reason": "Forbidden",
            "details": {"name": "mesh-env", "kind": "configmaps"},
            "code": 403,
        } == body

    def test_resource_names_limit_reads(self, fortio: client.ApiClient) -> None:
        """istio-autoconf names its config maps: another one in istio-system is forbidden."""
        core = client.CoreV1Api(fortio)
        with pytest.raises(ApiException) as caught:
            core.read_namespaced_config_map("kube-root-ca.crt", "istio-system")
        assert 403 == caught.value.status
        with pytest.raises(ApiException) as caught:
            core.list_namespaced_config_map("istio-system")
        assert status_of(caught.value)["message"].endswith(
            'cannot list resource "configmaps" in API group "" in the namespace "istio-system"'
        )

    def test_service_account_token_subresource_by_name(
        self, kemu: RunningEmulator, admin: client.ApiClient
    ) -> None:
        """hgate-default-tokens lets istio-system/default mint tokens only for `default`."""
        core = client.CoreV1Api(admin)
        core.create_namespaced_service_account("istio-system", {"metadata": {"name": "other"}})
        sa = client.CoreV1Api(bearer_client(kemu, token_for_api(core)))
        minted = sa.create_namespaced_service_account_token(
            "default", "istio-system", {"spec": {"audiences": ["a"]}}
        )
        assert minted.status.token
        with pytest.raises(ApiException) as caught:
            sa.create_namespaced_service_account_token("other", "istio-system", {"spec": {}})
        assert status_of(caught.value)["message"] == (
            'serviceaccounts "other" is forbidden: User "system:serviceaccount:istio-system:default" '
            'cannot create resource "serviceaccounts/token" in API group "" in the namespace "istio-system"'
        )

    def test_anonymous_and_unknown_token(self, kemu: RunningEmulator) -> None:
        """No token is system:anonymous (403); an unknown token is a 401 Unauthorized Status."""
        cluster = istio_cluster(kemu)
        base = f"https://{cluster.endpoint}:{cluster.endpoint_port}"
        anonymous = requests.get(f"{base}/api/v1/namespaces", verify=str(kemu.ca_file), timeout=10)
        assert 403 == anonymous.status_code
        assert (
            'User "system:anonymous" cannot list resource "namespaces"'
            in anonymous.json()["message"]
        )
        version = requests.get(f"{base}/version", verify=str(kemu.ca_file), timeout=10)
        assert 200 == version.status_code
        unknown = requests.get(
            f"{base}/api/v1/namespaces",
            headers={"Authorization": "Bearer nope"},
            verify=str(kemu.ca_file),
            timeout=10,
        )
        assert 401 == unknown.status_code
        assert {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        } == unknown.json()


class TestErrors:
    def test_error_shapes(self, kemu: RunningEmulator, admin: client.ApiClient) -> None:
        """Malformed bodies, unknown kinds, bad selectors and invalid names get real Status errors."""
        cluster = istio_cluster(kemu)
        base = f"https://{cluster.endpoint}:{cluster.endpoint_port}"
        kube = kube_cluster(kemu.world, cluster)
        session = requests.Session()
        session.verify = str(kemu.ca_file)
        session.headers["Authorization"] = f"Bearer {kube.admin_token}"
        malformed = session.post(f"{base}/api/v1/namespaces/default/configmaps", data=b"{not json")
        assert (400, "BadRequest") == (malformed.status_code, malformed.json()["reason"])
        wrong_kind = session.post(
            f"{base}/api/v1/namespaces/default/configmaps",
            json={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a"}},
        )
        assert (400, "BadRequest") == (wrong_kind.status_code, wrong_kind.json()["reason"])
        unknown = session.get(f"{base}/apis/example.com/v1/namespaces/default/widgets")
        assert (404, "NotFound", "the server could not find the requested resource") == (
            unknown.status_code,
            unknown.json()["reason"],
            unknown.json()["message"],
        )
        selector = session.get(f"{base}/api/v1/pods", params={"labelSelector": "a in (b"})
        assert (400, "BadRequest") == (selector.status_code, selector.json()["reason"])
        field = session.get(f"{base}/api/v1/configmaps", params={"fieldSelector": "data.x=1"})
        assert "field label not supported: data.x" == field.json()["message"]
        invalid = session.post(
            f"{base}/api/v1/namespaces/default/configmaps",
            json={"metadata": {"name": "Bad_Name"}, "data": {"a b": "x"}},
        )
        body = invalid.json()
        assert 422 == invalid.status_code
        assert ["metadata.name", "data[a b]"] == [c["field"] for c in body["details"]["causes"]]
        assert body["message"].startswith(
            'ConfigMap "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name"'
        )
        exists = session.post(f"{base}/api/v1/namespaces", json={"metadata": {"name": "default"}})
        assert {"name": "default", "kind": "namespaces"} == exists.json()["details"]
        assert 'namespaces "default" already exists' == exists.json()["message"]


def test_client_from_gke_discovery(kemu: RunningEmulator, tmp_path: Path) -> None:
    """GKE's endpoint and CA, with a world access token, give a client that reads mesh-env."""
    token = kemu.world.tokens.issue_access_token(
        Principal.for_email(FORTIO),
        ("https://www.googleapis.com/auth/cloud-platform",),
        now=kemu.world.clock(),
        lifetime=600,
    ).token
    found = requests.get(
        f"{kemu.url('container')}/v1/projects/mesh-demo/locations/us-central1-c/clusters/istio",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(kemu.ca_file),
        timeout=10,
    ).json()
    ca_file = tmp_path / "cluster-ca.pem"
    ca_file.write_bytes(base64.b64decode(found["masterAuth"]["clusterCaCertificate"]))
    configuration = client.Configuration()
    configuration.host = f"https://{found['endpoint']}"
    configuration.ssl_ca_cert = str(ca_file)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    core = client.CoreV1Api(client.ApiClient(configuration))
    assert (
        "mesh-demo"
        == core.read_namespaced_config_map("mesh-env", "istio-system").data["PROJECT_ID"]
    )
