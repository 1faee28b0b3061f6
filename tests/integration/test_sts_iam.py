"""STS and IAM Credentials over HTTPS, driven by the real clients, along the original's token chain.

A Kubernetes token for fortio/default of cluster istio becomes a federated
token at STS, which IAM Credentials turns into the mesh data-plane service
agent's access and ID tokens.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import google.auth.exceptions
import google.auth.impersonated_credentials
import google.oauth2.credentials
import google.oauth2.id_token
import google.oauth2.sts
import pytest
import requests
from google.auth.transport.requests import AuthorizedSession, Request

from emulator import kube_tokens
from emulator.world import Cluster, Principal

if TYPE_CHECKING:
    from collections.abc import Iterator

    from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

PROJECT = "mesh-demo"
PROJECT_NUMBER = 123456789012
TRUST_DOMAIN = "mesh-demo.svc.id.goog"
SERVICE_AGENT = "service-123456789012@gcp-sa-meshdataplane.iam.gserviceaccount.com"
K8S_FORTIO = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"
IMPERSONATED = "impersonated@mesh-demo.iam.gserviceaccount.com"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
RUN_AUDIENCE = "https://fortio-abc-uc.a.run.app"


def istio_cluster(emu: RunningEmulator) -> Cluster:
    return emu.world.cluster(PROJECT, "us-central1-c", "istio")


def identity_namespace(cluster: Cluster) -> str:
    return f"identitynamespace:{TRUST_DOMAIN}:{cluster.issuer}"


def k8s_token(
    emu: RunningEmulator,
    namespace: str = "fortio",
    name: str = "default",
    audiences: tuple[str, ...] = (TRUST_DOMAIN,),
    cluster: Cluster | None = None,
) -> str:
    """What the cluster's TokenRequest API would hand krun."""
    return kube_tokens.mint(
        cluster or istio_cluster(emu), namespace, name, list(audiences), now=emu.clock()
    )


def krun_sts_body(subject_token: str, audience: str) -> bytes:
    """The original Go krun's STS request: camelCase JSON."""
    return json.dumps(
        {
            "grantType": GRANT_TYPE,
            "subjectTokenType": JWT_TYPE,
            "requestedTokenType": ACCESS_TOKEN_TYPE,
            "audience": audience,
            "subjectToken": subject_token,
            "scope": CLOUD_PLATFORM,
        }
    ).encode()


def iam_url(emu: RunningEmulator, account: str, method: str) -> str:
    return f"{emu.url('iamcredentials')}/v1/projects/-/serviceAccounts/{account}:{method}"


@pytest.fixture
def session(emu: RunningEmulator) -> Iterator[requests.Session]:
    with requests.Session() as plain:
        plain.verify = str(emu.ca_file)
        yield plain


@pytest.fixture
def fresh_session(fresh_emu: RunningEmulator) -> Iterator[requests.Session]:
    with requests.Session() as plain:
        plain.verify = str(fresh_emu.ca_file)
        yield plain


def sts_post(
    emu: RunningEmulator, session: requests.Session, body: bytes, content_type: str | None = None
) -> requests.Response:
    headers = {"content-type": content_type} if content_type else {}
    return session.post(emu.url("sts") + "/v1/token", data=body, headers=headers)


def federated_token(emu: RunningEmulator, session: requests.Session, **token_args: Any) -> str:
    response = sts_post(
        emu,
        session,
        krun_sts_body(k8s_token(emu, **token_args), identity_namespace(istio_cluster(emu))),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def authorized(emu: RunningEmulator, access_token: str) -> AuthorizedSession:
    # google-auth is untyped; the ignores live in these helpers, not in every test.
    credentials = google.oauth2.credentials.Credentials(access_token)  # type: ignore[no-untyped-call]
    authed = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    authed.verify = str(emu.ca_file)
    return authed


def google_auth_exchange(
    emu: RunningEmulator, session: requests.Session, subject_token: str
) -> dict[str, Any]:
    """An STS exchange through google-auth's own RFC 8693 client (form-encoded)."""
    client = google.oauth2.sts.Client(token_exchange_endpoint=emu.url("sts") + "/v1/token")  # type: ignore[no-untyped-call]
    response: dict[str, Any] = client.exchange_token(  # type: ignore[no-untyped-call]
        Request(session),
        GRANT_TYPE,
        subject_token,
        JWT_TYPE,
        audience=identity_namespace(istio_cluster(emu)),
        scopes=[CLOUD_PLATFORM],
        requested_token_type=ACCESS_TOKEN_TYPE,
    )
    return response


def impersonate(
    emu: RunningEmulator, session: requests.Session, source: str, target: str, lifetime: int = 3600
) -> str:
    """google-auth's impersonated credentials, refreshed against our IAM Credentials."""
    credentials = google.auth.impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
        source_credentials=google.oauth2.credentials.Credentials(source),  # type: ignore[no-untyped-call]
        target_principal=target,
        target_scopes=[CLOUD_PLATFORM],
        lifetime=lifetime,
        iam_endpoint_override=iam_url(emu, target, "generateAccessToken"),
    )
    credentials.refresh(Request(session))  # type: ignore[no-untyped-call]
    token = credentials.token
    assert isinstance(token, str)
    return token


class TestStsExchange:
    @pytest.mark.parametrize("content_type", [None, "application/json"])
    def test_krun_json_body_gets_a_federated_token(
        self, emu: RunningEmulator, session: requests.Session, content_type: str | None
    ) -> None:
        """The Go krun's JSON (with and without Content-Type) yields a workload-identity access token."""
        response = sts_post(
            emu,
            session,
            krun_sts_body(k8s_token(emu), identity_namespace(istio_cluster(emu))),
            content_type,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert {"access_token", "issued_token_type", "token_type", "expires_in"} == set(body)
        assert (body["issued_token_type"], body["token_type"]) == (ACCESS_TOKEN_TYPE, "Bearer")
        assert 3500 < body["expires_in"] <= 3600
        record = emu.world.tokens.resolve_access_token(body["access_token"], now=emu.clock())
        assert record is not None
        assert (
            Principal.for_workload(PROJECT_NUMBER, TRUST_DOMAIN, "fortio", "default")
            == record.principal
        )
        assert "serviceAccount:mesh-demo.svc.id.goog[fortio/default]" in record.principal.members
        assert record.scopes == (CLOUD_PLATFORM,)

    def test_google_auth_sts_client_form_body(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """google-auth's own STS client (form-encoded, snake_case) gets the same kind of token."""
        body = google_auth_exchange(emu, session, k8s_token(emu))
        record = emu.world.tokens.resolve_access_token(body["access_token"], now=emu.clock())
        assert record is not None
        assert record.principal.subject.endswith(
            "/workloadIdentityPools/mesh-demo.svc.id.goog/subject/ns/fortio/sa/default"
        )

    def test_pool_provider_audience(self, emu: RunningEmulator, session: requests.Session) -> None:
        """The provider's full resource name is accepted as the audience too."""
        audience = f"//iam.googleapis.com/projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{TRUST_DOMAIN}/providers/istio"
        response = sts_post(emu, session, krun_sts_body(k8s_token(emu), audience))
        assert response.status_code == 200, response.text

    def test_federated_lifetime_never_outlives_the_subject_token(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """A K8s token with 10 minutes left gives a federated token of at most 10 minutes."""
        token = kube_tokens.mint(
            istio_cluster(emu), "fortio", "default", [TRUST_DOMAIN], now=emu.clock(), lifetime=600
        )
        response = sts_post(
            emu, session, krun_sts_body(token, identity_namespace(istio_cluster(emu)))
        )
        assert 590 <= response.json()["expires_in"] <= 600


class TestStsRefusals:
    def refused(self, response: requests.Response) -> tuple[int, str, str]:
        body = response.json()
        return response.status_code, body["error"], body["error_description"]

    def test_google_auth_reports_the_oauth_error(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """google-auth's STS client turns our 400 into an OAuthError carrying the code."""
        with pytest.raises(google.auth.exceptions.OAuthError, match="invalid_grant"):
            google_auth_exchange(emu, session, k8s_token(emu, audiences=("istio-ca",)))

    def test_wrong_token_audience(self, emu: RunningEmulator, session: requests.Session) -> None:
        """A token minted for istio-ca is not for the trust domain: invalid_grant naming both."""
        status, error, description = self.refused(
            sts_post(
                emu,
                session,
                krun_sts_body(
                    k8s_token(emu, audiences=("istio-ca",)), identity_namespace(istio_cluster(emu))
                ),
            )
        )
        assert (status, error) == (400, "invalid_grant")
        assert "istio-ca" in description
        assert TRUST_DOMAIN in description

    def test_unknown_cluster_url(self, emu: RunningEmulator, session: requests.Session) -> None:
        """An audience naming a cluster the world lacks is invalid_target naming the URL."""
        url = "https://container.googleapis.com/v1/projects/mesh-demo/locations/us-central1-c/clusters/nope"
        status, error, description = self.refused(
            sts_post(
                emu,
                session,
                krun_sts_body(k8s_token(emu), f"identitynamespace:{TRUST_DOMAIN}:{url}"),
            )
        )
        assert (status, error) == (400, "invalid_target")
        assert url in description

    def test_cluster_url_must_be_the_exact_issuer(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """A zone where GKE wants the cluster's location, or a project number for the id, is unknown."""
        url = f"https://container.googleapis.com/v1/projects/{PROJECT_NUMBER}/locations/us-central1-c/clusters/istio"
        status, error, _ = self.refused(
            sts_post(
                emu,
                session,
                krun_sts_body(k8s_token(emu), f"identitynamespace:{TRUST_DOMAIN}:{url}"),
            )
        )
        assert (status, error) == (400, "invalid_target")

    def test_unknown_trust_domain(self, emu: RunningEmulator, session: requests.Session) -> None:
        """A pool of a project the world does not have is invalid_target."""
        audience = f"identitynamespace:nowhere.svc.id.goog:{istio_cluster(emu).issuer}"
        status, error, description = self.refused(
            sts_post(emu, session, krun_sts_body(k8s_token(emu), audience))
        )
        assert (status, error) == (400, "invalid_target")
        assert "nowhere.svc.id.goog" in description

    def test_token_from_another_cluster(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """A valid token of cluster 'plain' does not pass for cluster 'istio'."""
        plain = emu.world.cluster(PROJECT, "europe-west1", "plain")
        status, error, description = self.refused(
            sts_post(
                emu,
                session,
                krun_sts_body(
                    k8s_token(emu, cluster=plain), identity_namespace(istio_cluster(emu))
                ),
            )
        )
        assert (status, error) == (400, "invalid_grant")
        assert plain.issuer in description

    def test_cluster_of_another_project(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """Another project's cluster cannot mint identities in mesh-demo's pool."""
        secret = emu.world.cluster("other-project", "us-east1-b", "secret")
        audience = f"identitynamespace:{TRUST_DOMAIN}:{secret.issuer}"
        status, error, _ = self.refused(
            sts_post(emu, session, krun_sts_body(k8s_token(emu, cluster=secret), audience))
        )
        assert (status, error) == (400, "invalid_target")

    def test_garbage_subject_token(self, emu: RunningEmulator, session: requests.Session) -> None:
        """A subject token that is not a JWT is invalid_grant."""
        status, error, _ = self.refused(
            sts_post(
                emu, session, krun_sts_body("not-a-jwt", identity_namespace(istio_cluster(emu)))
            )
        )
        assert (status, error) == (400, "invalid_grant")

    def test_missing_subject_token(self, emu: RunningEmulator, session: requests.Session) -> None:
        """A form without subject_token is invalid_request naming it."""
        body = b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&audience=x"
        status, error, description = self.refused(
            sts_post(emu, session, body, "application/x-www-form-urlencoded")
        )
        assert (status, error) == (400, "invalid_request")
        assert "subject_token" in description

    def test_expired_k8s_token(
        self, fresh_emu: RunningEmulator, fresh_session: requests.Session
    ) -> None:
        """An hour and a bit later, the same K8s token is refused as expired."""
        token = k8s_token(fresh_emu)
        fresh_emu.clock.advance(3601)
        status, error, description = self.refused(
            sts_post(
                fresh_emu,
                fresh_session,
                krun_sts_body(token, identity_namespace(istio_cluster(fresh_emu))),
            )
        )
        assert (status, error) == (400, "invalid_grant")
        assert "expired" in description


class TestImpersonation:
    def test_the_original_chain_access_token(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """Federated token -> generateAccessToken (the original's body) -> a token of the service agent."""
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(
                iam_url(emu, SERVICE_AGENT, "generateAccessToken"),
                json={
                    "name": "",
                    "delegates": None,
                    "scope": [CLOUD_PLATFORM],
                    "lifetime": {"seconds": 3600},
                },
            )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["expireTime"].endswith("Z")
        record = emu.world.tokens.resolve_access_token(body["accessToken"], now=emu.clock())
        assert record is not None
        assert Principal.for_email(SERVICE_AGENT) == record.principal
        assert record.scopes == (CLOUD_PLATFORM,)

    def test_the_original_chain_id_token(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """Federated token -> generateIdToken -> an ID token google-auth verifies against the world's certs."""
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(
                iam_url(emu, SERVICE_AGENT, "generateIdToken"),
                json={"audience": RUN_AUDIENCE, "delegates": None, "includeEmail": True},
            )
        assert response.status_code == 200, response.text
        claims = google.oauth2.id_token.verify_token(
            response.json()["token"],
            Request(session),
            audience=RUN_AUDIENCE,
            certs_url=emu.url("oauth2") + "/oauth2/v1/certs",
        )
        agent = emu.world.service_account(SERVICE_AGENT)
        assert (agent.unique_id, SERVICE_AGENT, True) == (
            claims["sub"],
            claims["email"],
            claims["email_verified"],
        )
        assert claims["iss"] == "https://accounts.google.com"

    def test_id_token_without_email(self, emu: RunningEmulator, session: requests.Session) -> None:
        """includeEmail false (the default) leaves the email claim out."""
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(
                iam_url(emu, SERVICE_AGENT, "generateIdToken"), json={"audience": RUN_AUDIENCE}
            )
        claims = google.oauth2.id_token.verify_token(
            response.json()["token"],
            Request(session),
            audience=RUN_AUDIENCE,
            certs_url=emu.url("oauth2") + "/oauth2/v1/certs",
        )
        assert "email" not in claims

    def test_unique_id_names_the_account_too(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """The path may name the account by its unique id instead of its email."""
        agent = emu.world.service_account(SERVICE_AGENT)
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(
                iam_url(emu, agent.unique_id, "generateAccessToken"),
                json={"scope": [CLOUD_PLATFORM]},
            )
        assert response.status_code == 200, response.text

    def test_google_auth_impersonated_credentials(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """google-auth's impersonated credentials, as k8s-fortio, get a token for 'impersonated'."""
        source_token = emu.world.tokens.issue_access_token(
            Principal.for_email(K8S_FORTIO), (CLOUD_PLATFORM,), now=emu.clock(), lifetime=3600
        )
        token = impersonate(emu, session, source_token.token, IMPERSONATED, lifetime=600)
        record = emu.world.tokens.resolve_access_token(token, now=emu.clock())
        assert record is not None
        assert record.principal.email == IMPERSONATED
        assert 590 <= record.expires_at - record.issued_at <= 600

    def test_k8s_fortio_may_not_impersonate_the_service_agent(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """The service agent grants token creation to workloads only: k8s-fortio gets a RefreshError (403)."""
        source_token = emu.world.tokens.issue_access_token(
            Principal.for_email(K8S_FORTIO), (CLOUD_PLATFORM,), now=emu.clock(), lifetime=3600
        )
        with pytest.raises(google.auth.exceptions.RefreshError, match="PERMISSION_DENIED"):
            impersonate(emu, session, source_token.token, SERVICE_AGENT)


class TestIamRefusals:
    def error(self, response: requests.Response) -> tuple[int, str, str]:
        body = response.json()["error"]
        assert response.status_code == body["code"]
        return body["code"], body["status"], body["message"]

    def test_namespace_without_the_grant(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """fortio/other has no binding on the service agent: 403 naming the permission."""
        with authorized(emu, federated_token(emu, session, name="other")) as authed:
            response = authed.post(
                iam_url(emu, SERVICE_AGENT, "generateAccessToken"), json={"scope": [CLOUD_PLATFORM]}
            )
        code, status, message = self.error(response)
        assert (code, status) == (403, "PERMISSION_DENIED")
        assert "iam.serviceAccounts.getAccessToken" in message
        assert response.json()["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"

    def test_id_token_needs_get_open_id_token(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """The same denial for generateIdToken names getOpenIdToken."""
        with authorized(emu, federated_token(emu, session, namespace="other-ns")) as authed:
            response = authed.post(
                iam_url(emu, SERVICE_AGENT, "generateIdToken"), json={"audience": RUN_AUDIENCE}
            )
        code, _, message = self.error(response)
        assert code == 403
        assert "iam.serviceAccounts.getOpenIdToken" in message

    def test_unknown_account_looks_like_a_denial(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """Google does not reveal whether an account exists: 403, as for a denial."""
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(
                iam_url(emu, "ghost@mesh-demo.iam.gserviceaccount.com", "generateAccessToken"),
                json={"scope": [CLOUD_PLATFORM]},
            )
        assert self.error(response)[:2] == (403, "PERMISSION_DENIED")

    def test_no_bearer(self, emu: RunningEmulator, session: requests.Session) -> None:
        """Without Authorization the API answers 401 UNAUTHENTICATED with a Bearer challenge."""
        response = session.post(
            iam_url(emu, SERVICE_AGENT, "generateAccessToken"), json={"scope": [CLOUD_PLATFORM]}
        )
        assert self.error(response)[:2] == (401, "UNAUTHENTICATED")
        assert response.headers["www-authenticate"].startswith("Bearer")

    def test_unknown_bearer(self, emu: RunningEmulator, session: requests.Session) -> None:
        """A token the world never issued is 401 too."""
        # A plain session: AuthorizedSession would try to refresh on the 401.
        response = session.post(
            iam_url(emu, SERVICE_AGENT, "generateAccessToken"),
            json={"scope": [CLOUD_PLATFORM]},
            headers={"authorization": "Bearer ya29.made-up"},
        )
        assert self.error(response)[:2] == (401, "UNAUTHENTICATED")

    def test_caller_token_without_a_usable_scope(
        self, emu: RunningEmulator, session: requests.Session
    ) -> None:
        """A caller token scoped to something else cannot use IAM Credentials."""
        token = emu.world.tokens.issue_access_token(
            Principal.for_email(K8S_FORTIO),
            ("https://www.googleapis.com/auth/userinfo.email",),
            now=emu.clock(),
            lifetime=600,
        )
        with authorized(emu, token.token) as authed:
            response = authed.post(
                iam_url(emu, IMPERSONATED, "generateAccessToken"), json={"scope": [CLOUD_PLATFORM]}
            )
        code, status, message = self.error(response)
        assert (code, status) == (403, "PERMISSION_DENIED")
        assert "scopes" in message

    @pytest.mark.parametrize(
        ("method", "body", "fragment"),
        [
            ("generateAccessToken", {"scope": [CLOUD_PLATFORM], "lifetime": "3601s"}, "lifetime"),
            (
                "generateAccessToken",
                {"scope": [CLOUD_PLATFORM], "lifetime": {"seconds": 43200}},
                "lifetime",
            ),
            ("generateAccessToken", {"lifetime": "60s"}, "scope"),
            ("generateAccessToken", {"scope": [CLOUD_PLATFORM], "scopes": []}, "Unknown name"),
            ("generateIdToken", {"includeEmail": True}, "audience"),
        ],
    )
    def test_bad_bodies_are_invalid_argument(
        self,
        emu: RunningEmulator,
        session: requests.Session,
        method: str,
        body: dict[str, Any],
        fragment: str,
    ) -> None:
        """Too long a lifetime, no scope, an unknown field, no audience: 400 naming the field."""
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(iam_url(emu, SERVICE_AGENT, method), json=body)
        code, status, message = self.error(response)
        assert (code, status) == (400, "INVALID_ARGUMENT")
        assert fragment in message

    def test_expired_federated_token(
        self, fresh_emu: RunningEmulator, fresh_session: requests.Session
    ) -> None:
        """Once the world clock passes the federated token's expiry, IAM answers 401."""
        token = federated_token(fresh_emu, fresh_session)
        fresh_emu.clock.advance(3601)
        response = fresh_session.post(
            iam_url(fresh_emu, SERVICE_AGENT, "generateAccessToken"),
            json={"scope": [CLOUD_PLATFORM]},
            headers={"authorization": f"Bearer {token}"},
        )
        assert self.error(response)[:2] == (401, "UNAUTHENTICATED")

    def test_disabled_account(
        self, fresh_emu: RunningEmulator, fresh_session: requests.Session
    ) -> None:
        """A disabled target is FAILED_PRECONDITION, after the permission check passes."""
        fresh_emu.world.service_account(SERVICE_AGENT).disabled = True
        with authorized(fresh_emu, federated_token(fresh_emu, fresh_session)) as authed:
            response = authed.post(
                iam_url(fresh_emu, SERVICE_AGENT, "generateAccessToken"),
                json={"scope": [CLOUD_PLATFORM]},
            )
        code, status, message = self.error(response)
        assert (code, status) == (400, "FAILED_PRECONDITION")
        assert "disabled" in message


class TestDelegation:
    def test_chain_through_a_delegate(
        self, fresh_emu: RunningEmulator, fresh_session: requests.Session
    ) -> None:
        """k8s-fortio -> impersonated -> service agent works once each hop holds the role, not before."""
        source = fresh_emu.world.tokens.issue_access_token(
            Principal.for_email(K8S_FORTIO), (CLOUD_PLATFORM,), now=fresh_emu.clock(), lifetime=600
        )
        body = {
            "scope": [CLOUD_PLATFORM],
            "delegates": [f"projects/-/serviceAccounts/{IMPERSONATED}"],
        }
        with authorized(fresh_emu, source.token) as authed:
            before = authed.post(
                iam_url(fresh_emu, SERVICE_AGENT, "generateAccessToken"), json=body
            )
            agent = fresh_emu.world.service_account(SERVICE_AGENT)
            agent.iam.setdefault("roles/iam.serviceAccountTokenCreator", set()).add(
                f"serviceAccount:{IMPERSONATED}"
            )
            after = authed.post(iam_url(fresh_emu, SERVICE_AGENT, "generateAccessToken"), json=body)
            direct = authed.post(
                iam_url(fresh_emu, SERVICE_AGENT, "generateAccessToken"),
                json={"scope": [CLOUD_PLATFORM]},
            )
        assert before.status_code == 403
        assert after.status_code == 200, after.text
        assert direct.status_code == 403
        record = fresh_emu.world.tokens.resolve_access_token(
            after.json()["accessToken"], now=fresh_emu.clock()
        )
        assert record is not None
        assert record.principal.email == SERVICE_AGENT

    def test_malformed_delegate(self, emu: RunningEmulator, session: requests.Session) -> None:
        """A delegate that is not a projects/-/serviceAccounts/ name is a 400."""
        with authorized(emu, federated_token(emu, session)) as authed:
            response = authed.post(
                iam_url(emu, SERVICE_AGENT, "generateAccessToken"),
                json={"scope": [CLOUD_PLATFORM], "delegates": [IMPERSONATED]},
            )
        assert response.status_code == 400


class TestTokeninfo:
    def test_id_token_lives_by_the_world_clock(
        self, fresh_emu: RunningEmulator, fresh_session: requests.Session
    ) -> None:
        """An ID token minted after the world clock moved ahead of the host's is valid, then expires."""
        fresh_emu.clock.advance(7200)
        token = fresh_emu.world.tokens.id_token(
            subject="1234", audience=RUN_AUDIENCE, now=fresh_emu.clock(), lifetime=600
        )
        url = fresh_emu.url("oauth2") + "/tokeninfo"
        fresh = fresh_session.get(url, params={"id_token": token})
        fresh_emu.clock.advance(601)
        stale = fresh_session.get(url, params={"id_token": token})
        assert (200, "1234", RUN_AUDIENCE) == (
            fresh.status_code,
            fresh.json().get("sub"),
            fresh.json().get("aud"),
        )
        assert (400, "Token expired") == (stale.status_code, stale.json()["error_description"])
