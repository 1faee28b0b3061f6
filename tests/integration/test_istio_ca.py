"""The emulated Istio CA and xDS authentication against a real grpcio client over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from emulator import kube_tokens
from emulator.istio import protos
from emulator.istio.ca import make_csr
from emulator.istio.testing import ISTIOD_SNI, fetch_certificates
from emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

KEY = "istiod/mesh-demo/istio"
TD = "mesh-demo.svc.id.goog"


@pytest.fixture
def channel(emu: RunningEmulator) -> Iterator[grpc.Channel]:
    credentials = grpc.ssl_channel_credentials(root_certificates=emu.ca_file.read_bytes())
    options = [("grpc.ssl_target_name_override", ISTIOD_SNI)]
    with grpc.secure_channel(emu.hostport(KEY), credentials, options=options) as chan:
        yield chan


def token(
    emu: RunningEmulator, sa: str = "echo", *, audiences: tuple[str, ...] = (TD,), **kw: object
) -> str:
    cluster = emu.world.cluster("mesh-demo", "us-central1-c", "istio")
    now = kw.pop("now", emu.world.clock())
    return kube_tokens.mint(cluster, "test", sa, list(audiences), now=now, **kw)  # type: ignore[arg-type]


def create(channel: grpc.Channel, csr: str, bearer: str | None, ttl: int = 0) -> list[str]:
    call = channel.unary_unary(
        protos.CA_METHOD,
        request_serializer=protos.IstioCertificateRequest.SerializeToString,
        response_deserializer=protos.IstioCertificateResponse.FromString,
    )
    metadata = [("authorization", f"Bearer {bearer}")] if bearer else []
    response = call(
        protos.IstioCertificateRequest(csr=csr, validity_duration=ttl),
        metadata=metadata,
        timeout=10,
    )
    return list(response.cert_chain)


def test_csr_for_another_identity_gets_the_tokens_identity(
    emu: RunningEmulator, channel: grpc.Channel
) -> None:
    """The certificate names the token's service account, whatever the CSR asked for."""
    csr, _ = make_csr(f"spiffe://{TD}/ns/istio-system/sa/istiod")
    chain = create(channel, csr, token(emu, "echo", audiences=("istio-ca",)), ttl=600)
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [f"spiffe://{TD}/ns/test/sa/echo"] == san.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert len(chain) == 3
    assert chain[-1] == emu.ca_file.read_text()
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 660


def forged(emu: RunningEmulator) -> str:
    claims = jwt.decode(token(emu), options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256")


@pytest.mark.parametrize("case", ["none", "expired", "wrong audience", "forged"])
def test_bad_tokens_are_unauthenticated(
    emu: RunningEmulator, channel: grpc.Channel, case: str
) -> None:
    """Missing, expired, wrong-audience and forged tokens get gRPC UNAUTHENTICATED."""
    csr, _ = make_csr("spiffe://x/ns/y/sa/z")
    bearer = {
        "none": None,
        "expired": token(emu, now=emu.world.clock() - 7200),
        "wrong audience": token(emu, audiences=("https://kubernetes.default.svc",)),
        "forged": forged(emu),
    }[case]
    with pytest.raises(grpc.RpcError) as info:
        create(channel, csr, bearer)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_malformed_csr_is_invalid_argument(emu: RunningEmulator, channel: grpc.Channel) -> None:
    """A CSR that does not parse is INVALID_ARGUMENT with the reason."""
    with pytest.raises(grpc.RpcError) as info:
        create(channel, "-----BEGIN CERTIFICATE REQUEST-----\nxx\n", token(emu))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "CSR parsing error" in info.value.details()


def test_fetch_certificates_writes_a_usable_trio(emu: RunningEmulator, tmp_path: Path) -> None:
    """The agent-like helper writes chain, key and root that match each other."""
    certs = fetch_certificates(emu.hostport(KEY), emu.ca_file, token(emu, "client"), tmp_path)
    leaf = x509.load_pem_x509_certificate((certs / "cert-chain.pem").read_bytes())
    root = x509.load_pem_x509_certificate((certs / "root-cert.pem").read_bytes())
    intermediate = x509.load_pem_x509_certificates((certs / "cert-chain.pem").read_bytes())[1]
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)


def ads_once(channel: grpc.Channel, node_id: str, bearer: str | None) -> None:
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    request = discovery_pb2.DiscoveryRequest(type_url=protos.CLUSTER)
    request.node.id = node_id
    metadata = [("authorization", f"Bearer {bearer}")] if bearer else []
    for _ in stub.StreamAggregatedResources(iter([request]), metadata=metadata, timeout=5):
        return


def test_xds_requires_a_token(emu: RunningEmulator, channel: grpc.Channel) -> None:
    """An ADS stream without a valid token is UNAUTHENTICATED."""
    with pytest.raises(grpc.RpcError) as info:
        ads_once(channel, "sidecar~10.0.0.1~a.test~test.svc.cluster.local", None)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_xds_refuses_a_proxy_outside_the_tokens_namespace(
    emu: RunningEmulator, channel: grpc.Channel
) -> None:
    """A token for namespace test cannot fetch configuration for a proxy in namespace prod."""
    with pytest.raises(grpc.RpcError) as info:
        ads_once(channel, "sidecar~10.0.0.1~a.prod~prod.svc.cluster.local", token(emu))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_xds_answers_an_authenticated_proxy(emu: RunningEmulator, channel: grpc.Channel) -> None:
    """With a token for the proxy's namespace, the first CDS request gets a response."""
    ads_once(channel, "sidecar~10.0.0.1~a.test~test.svc.cluster.local", token(emu))
