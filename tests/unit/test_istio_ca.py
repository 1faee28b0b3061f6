"""The Istio CA's pure parts: SANs from the identity, chains, lifetimes, CSR and token checks."""

from __future__ import annotations

import datetime as dt
import itertools

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from emulator import kube_tokens
from emulator.clock import OffsetClock
from emulator.istio.ca import (
    AuthenticationError,
    CsrError,
    Identity,
    IstioCA,
    KubeJwtAuthenticator,
    TtlError,
    csr_identities,
    make_csr,
    parse_csr,
)
from emulator.pki import WorldPKI
from emulator.testing import demo_world_text
from emulator.world import World
from emulator.worldfile import parse_world

TD = "mesh-demo.svc.id.goog"
NOW = 1_800_000_000.0
ME = Identity(TD, "test", "echo")


@pytest.fixture(scope="module")
def world() -> World:
    return parse_world(demo_world_text(), clock=OffsetClock())


@pytest.fixture(scope="module")
def ca() -> IstioCA:
    return IstioCA.under(WorldPKI("unit"), "unit", default_ttl=3600, max_ttl=7200)


def uris(pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def test_san_comes_from_the_identity_never_the_csr(ca: IstioCA) -> None:
    """A CSR asking for another identity still gets the caller's SPIFFE id, and only it."""
    csr, _ = make_csr(f"spiffe://{TD}/ns/kube-system/sa/admin")
    assert csr_identities(parse_csr(csr)) == [f"spiffe://{TD}/ns/kube-system/sa/admin"]
    chain = ca.sign(csr, ME, ttl=0, now=NOW)
    assert [f"spiffe://{TD}/ns/test/sa/echo"] == uris(chain[0])


def test_chain_is_leaf_intermediate_root_and_verifies(ca: IstioCA) -> None:
    """The chain has three certificates, each signed by the next, the root self-signed."""
    csr, _ = make_csr("spiffe://x/ns/y/sa/z")
    certs = [x509.load_pem_x509_certificate(c.encode()) for c in ca.sign(csr, ME, ttl=0, now=NOW)]
    assert len(certs) == 3
    for child, parent in itertools.pairwise(certs):
        child.verify_directly_issued_by(parent)
    certs[2].verify_directly_issued_by(certs[2])
    assert certs[2].public_bytes(serialization.Encoding.PEM).decode() == ca.root_pem


@pytest.mark.parametrize(("asked", "lifetime"), [(0, 3600), (-5, 3600), (600, 600), (7200, 7200)])
def test_lifetime_default_and_requested(ca: IstioCA, asked: int, lifetime: int) -> None:
    """validity_duration is honoured up to the maximum; zero or negative means the default."""
    csr, _ = make_csr("spiffe://x/ns/y/sa/z")
    cert = x509.load_pem_x509_certificate(ca.sign(csr, ME, ttl=asked, now=NOW)[0].encode())
    start = dt.datetime.fromtimestamp(NOW, dt.UTC)
    assert cert.not_valid_after_utc == start + dt.timedelta(seconds=lifetime)


def test_lifetime_above_the_maximum_is_refused(ca: IstioCA) -> None:
    """A validity_duration above the maximum is INVALID_ARGUMENT naming both values."""
    csr, _ = make_csr("spiffe://x/ns/y/sa/z")
    with pytest.raises(TtlError, match="7201s is greater than the max allowed TTL 7200s") as info:
        ca.sign(csr, ME, ttl=7201, now=NOW)
    assert info.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    ("pem", "problem"),
    [
        ("", "empty"),
        ("not a csr", "not a PEM certificate request"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "not a PEM certificate request",
        ),
    ],
)
def test_malformed_csr_names_the_problem(ca: IstioCA, pem: str, problem: str) -> None:
    """A CSR that cannot be parsed is a CsrError (INVALID_ARGUMENT) saying why."""
    with pytest.raises(CsrError, match=problem) as info:
        ca.sign(pem, ME, ttl=0, now=NOW)
    assert info.value.code == "INVALID_ARGUMENT"


def test_issue_makes_a_matching_key(ca: IstioCA) -> None:
    """The one-step issue (the SDS stand-in) returns a key that matches the leaf."""
    chain, key_pem = ca.issue(ME, now=NOW)
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    assert leaf.public_key() == key.public_key()


def authenticator(world: World) -> KubeJwtAuthenticator:
    cluster = world.cluster("mesh-demo", "us-central1-c", "istio")
    return KubeJwtAuthenticator(world, cluster, trust_domain=TD, cluster_id="istio")


@pytest.mark.parametrize("audience", [TD, "istio-ca"])
def test_accepts_trust_domain_and_istio_ca_audiences(world: World, audience: str) -> None:
    """Both audiences istiod accepts by default authenticate to the token's service account."""
    cluster = world.cluster("mesh-demo", "us-central1-c", "istio")
    token = kube_tokens.mint(cluster, "test", "echo", [audience], now=NOW)
    assert ME == authenticator(world).authenticate(token, cluster_id=None, now=NOW + 1)


def forged(world: World) -> str:
    cluster = world.cluster("mesh-demo", "us-central1-c", "istio")
    claims = jwt.decode(
        kube_tokens.mint(cluster, "test", "echo", [TD], now=NOW),
        options={"verify_signature": False},
    )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        claims, other, algorithm="RS256", headers={"kid": kube_tokens.key_id(cluster)}
    )


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("missing", "no bearer token"),
        ("expired", "expired"),
        ("audience", "include none of"),
        ("forged", "signature"),
        ("other cluster", "not by this cluster"),
        ("cluster id", "claims to be in cluster"),
    ],
)
def test_refused_tokens(world: World, case: str, problem: str) -> None:
    """Missing, expired, wrong-audience, forged and foreign tokens are AuthenticationErrors."""
    cluster = world.cluster("mesh-demo", "us-central1-c", "istio")
    plain = world.cluster("mesh-demo", "europe-west1", "plain")
    token: str | None = kube_tokens.mint(cluster, "test", "echo", [TD], now=NOW)
    cluster_id = None
    now = NOW + 1
    if case == "missing":
        token = None
    elif case == "expired":
        now = NOW + 7200
    elif case == "audience":
        token = kube_tokens.mint(cluster, "test", "echo", ["https://kubernetes.default"], now=NOW)
    elif case == "forged":
        token = forged(world)
    elif case == "other cluster":
        token = kube_tokens.mint(plain, "test", "echo", [TD], now=NOW)
    else:
        cluster_id = "elsewhere"
    with pytest.raises(AuthenticationError, match=problem) as info:
        authenticator(world).authenticate(token, cluster_id=cluster_id, now=now)
    assert info.value.code == "UNAUTHENTICATED"
