"""Kubernetes service-account tokens: minted by a cluster, verified against the world."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from emulator import kube_tokens
from emulator.testing import demo_world_text
from emulator.world import Cluster, World
from emulator.worldfile import parse_world

NOW = 1_800_000_000.0
TRUST_DOMAIN = "mesh-demo.svc.id.goog"


@pytest.fixture(scope="module")
def world() -> World:
    return parse_world(demo_world_text())


@pytest.fixture(scope="module")
def istio(world: World) -> Cluster:
    return world.cluster("mesh-demo", "us-central1-c", "istio")


def segment(token: str, index: int) -> dict[str, object]:
    part = token.split(".")[index]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


class TestMint:
    def test_claims_have_the_gke_shape(self, istio: Cluster) -> None:
        """A minted token carries GKE's issuer, subject, audiences, times and kubernetes.io claim."""
        token = kube_tokens.mint(
            istio, "fortio", "default", [TRUST_DOMAIN], now=NOW, pod=("p-0", "uid-p")
        )
        claims = segment(token, 1)
        assert (
            claims["iss"]
            == "https://container.googleapis.com/v1/projects/mesh-demo/locations/us-central1-c/clusters/istio"
        )
        assert claims["sub"] == "system:serviceaccount:fortio:default"
        assert claims["aud"] == [TRUST_DOMAIN]
        assert (int(NOW), int(NOW), int(NOW) + 3600) == (
            claims["iat"],
            claims["nbf"],
            claims["exp"],
        )
        kube = claims["kubernetes.io"]
        assert isinstance(kube, dict)
        assert kube["namespace"] == "fortio"
        assert kube["pod"] == {"name": "p-0", "uid": "uid-p"}
        assert kube["serviceaccount"]["name"] == "default"
        assert (
            kube_tokens.service_account_uid(istio, "fortio", "default")
            == kube["serviceaccount"]["uid"]
        )

    def test_header_has_kid_and_no_typ(self, istio: Cluster) -> None:
        """Like kube-apiserver: RS256, the key's kid, no typ."""
        header = segment(kube_tokens.mint(istio, "a", "b", ["x"], now=NOW), 0)
        assert {"alg": "RS256", "kid": kube_tokens.key_id(istio)} == header

    def test_jwks_verifies_the_token(self, istio: Cluster) -> None:
        """The cluster's JWKS is enough for an ordinary JWT library to verify its tokens."""
        token = kube_tokens.mint(istio, "a", "b", ["x"], now=NOW)
        key = jwt.PyJWKSet.from_dict(kube_tokens.jwks(istio))[kube_tokens.key_id(istio)]
        claims = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience="x",
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        assert claims["sub"] == "system:serviceaccount:a:b"

    @pytest.mark.parametrize(
        ("namespace", "name", "audiences", "lifetime"),
        [("", "b", ["x"], 60), ("a", "", ["x"], 60), ("a", "b", [], 60), ("a", "b", ["x"], 0)],
    )
    def test_refuses_incomplete_requests(
        self, istio: Cluster, namespace: str, name: str, audiences: list[str], lifetime: int
    ) -> None:
        """No namespace, no name, no audience or no lifetime: ValueError, not a token."""
        with pytest.raises(ValueError):
            kube_tokens.mint(istio, namespace, name, audiences, now=NOW, lifetime=lifetime)


class TestVerify:
    def test_round_trip(self, world: World, istio: Cluster) -> None:
        """A fresh token verifies with its audience and yields its service account."""
        token = kube_tokens.mint(istio, "fortio", "default", [TRUST_DOMAIN, "istio-ca"], now=NOW)
        claims = kube_tokens.verify(world, token, now=NOW + 10, expected_audience="istio-ca")
        assert kube_tokens.service_account_of(claims) == ("fortio", "default")
        assert istio is kube_tokens.find_cluster(world, claims["iss"])

    def test_without_expected_audience_any_audience_passes(
        self, world: World, istio: Cluster
    ) -> None:
        """The audience is only checked when the caller names one."""
        token = kube_tokens.mint(istio, "a", "b", ["whatever"], now=NOW)
        assert kube_tokens.audiences_of(kube_tokens.verify(world, token, now=NOW)) == ["whatever"]

    def test_wrong_audience(self, world: World, istio: Cluster) -> None:
        """A token for another audience is refused, naming the audience."""
        token = kube_tokens.mint(istio, "a", "b", ["istio-ca"], now=NOW)
        with pytest.raises(kube_tokens.WrongAudienceError, match=TRUST_DOMAIN):
            kube_tokens.verify(world, token, now=NOW, expected_audience=TRUST_DOMAIN)

    def test_expired(self, world: World, istio: Cluster) -> None:
        """At exp the token is dead, even though it was fine a second before."""
        token = kube_tokens.mint(istio, "a", "b", ["x"], now=NOW, lifetime=600)
        kube_tokens.verify(world, token, now=NOW + 599)
        with pytest.raises(kube_tokens.TokenExpiredError, match="expired"):
            kube_tokens.verify(world, token, now=NOW + 600)

    def test_not_yet_valid(self, world: World, istio: Cluster) -> None:
        """Before nbf the token is refused with its own error."""
        token = kube_tokens.mint(istio, "a", "b", ["x"], now=NOW)
        with pytest.raises(kube_tokens.TokenNotYetValidError):
            kube_tokens.verify(world, token, now=NOW - 30)

    def test_forged_with_another_key(self, world: World, istio: Cluster) -> None:
        """Claims copied from a real token but signed with another key fail the signature."""
        claims = segment(kube_tokens.mint(istio, "fortio", "default", ["x"], now=NOW), 1)
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            claims, other, algorithm="RS256", headers={"kid": kube_tokens.key_id(istio)}
        )
        with pytest.raises(kube_tokens.BadSignatureError, match="signature"):
            kube_tokens.verify(world, forged, now=NOW)

    def test_another_clusters_key(self, world: World, istio: Cluster) -> None:
        """A token signed by cluster 'plain' but claiming to be from 'istio' is refused."""
        plain = world.cluster("mesh-demo", "europe-west1", "plain")
        claims = segment(kube_tokens.mint(istio, "a", "b", ["x"], now=NOW), 1)
        assert plain.sa_signing_key is not None
        forged = jwt.encode(claims, plain.sa_signing_key, algorithm="RS256")
        with pytest.raises(kube_tokens.BadSignatureError):
            kube_tokens.verify(world, forged, now=NOW)

    def test_unknown_issuer(self, world: World, istio: Cluster) -> None:
        """A cluster the world does not have is an unknown issuer, named in the error."""
        stranger = Cluster(
            project_id="nowhere",
            name="ghost",
            location="mars-1",
            sa_signing_key=istio.sa_signing_key,
        )
        token = kube_tokens.mint(stranger, "a", "b", ["x"], now=NOW)
        with pytest.raises(kube_tokens.UnknownIssuerError, match="ghost"):
            kube_tokens.verify(world, token, now=NOW)

    def test_unsigned_token_is_malformed(self, world: World, istio: Cluster) -> None:
        """alg=none is never accepted."""
        claims = segment(kube_tokens.mint(istio, "a", "b", ["x"], now=NOW), 1)
        token = jwt.encode(claims, "", algorithm="none")
        with pytest.raises(kube_tokens.MalformedTokenError, match="RS256"):
            kube_tokens.verify(world, token, now=NOW)

    def test_non_service_account_subject_is_malformed(self, world: World, istio: Cluster) -> None:
        """A correctly signed token whose subject is not system:serviceaccount:NS:NAME is refused."""
        claims = segment(kube_tokens.mint(istio, "a", "b", ["x"], now=NOW), 1)
        claims["sub"] = "system:node:n1"
        assert istio.sa_signing_key is not None
        token = jwt.encode(claims, istio.sa_signing_key, algorithm="RS256")
        with pytest.raises(kube_tokens.MalformedTokenError, match="subject"):
            kube_tokens.verify(world, token, now=NOW)

    @pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "...."])
    def test_garbage_is_malformed(self, world: World, garbage: str) -> None:
        """Anything that is not a JWT fails with MalformedTokenError, not a library exception."""
        with pytest.raises(kube_tokens.MalformedTokenError):
            kube_tokens.verify(world, garbage, now=NOW)

    @given(
        st.text(max_size=200)
        | st.lists(st.binary(max_size=60), min_size=3, max_size=3).map(
            lambda parts: ".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in parts)
        )
    )
    def test_anything_is_claims_or_kube_token_error(self, world: World, token: str) -> None:
        """Arbitrary text and arbitrary three-segment tokens raise KubeTokenError and nothing else."""
        with pytest.raises(kube_tokens.KubeTokenError):
            kube_tokens.verify(world, token, now=NOW)
