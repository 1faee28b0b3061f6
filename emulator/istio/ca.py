"""The Istio CA: who is calling (a Kubernetes JWT), and the certificate it may have.

istiod authenticates `authorization: Bearer <JWT>` with its API server's
TokenReview, accepting the audiences in `TOKEN_AUDIENCES` (the trust domain and
`istio-ca`), and signs the CSR with a SPIFFE URI SAN taken from the token's
service account, never from the CSR. The chain comes back leaf first, root last.

Our signing certificate is an intermediate under the world root (istiod with a
plugged-in CA: `cacerts` holding `ca-cert.pem`, `root-cert.pem`), so the chain
has three entries and verifies against the world root every participant trusts.

Authentication goes through the `Authenticator` protocol so that the
Kubernetes-store TokenReview can replace the first implementation, which checks
tokens with `emulator.kube_tokens.verify` (same key, issuer, expiry, audience).

* CAError                .code is the gRPC status name
  x AuthenticationError  UNAUTHENTICATED: no, expired, forged or wrong-audience token
  x DeniedError          PERMISSION_DENIED: authenticated but not allowed (impersonation)
  x CsrError             INVALID_ARGUMENT: the CSR cannot be used; the message says why
  x TtlError             INVALID_ARGUMENT: validity_duration above the maximum
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from emulator import kube_tokens
from emulator.errors import EmulatorError
from emulator.istio.model import spiffe_id

if TYPE_CHECKING:
    from emulator.pki import WorldPKI
    from emulator.world import Cluster, World

DEFAULT_TTL = 24 * 3600
"""istiod's `DEFAULT_WORKLOAD_CERT_TTL`."""
MAX_TTL = 90 * 24 * 3600
"""istiod's `MAX_WORKLOAD_CERT_TTL`."""
ISTIO_CA_AUDIENCE = "istio-ca"

_PEM = serialization.Encoding.PEM


class CAError(EmulatorError):
    code = "INTERNAL"


class AuthenticationError(CAError):
    code = "UNAUTHENTICATED"


class DeniedError(CAError):
    code = "PERMISSION_DENIED"


class CsrError(CAError):
    code = "INVALID_ARGUMENT"


class TtlError(CAError):
    code = "INVALID_ARGUMENT"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: a Kubernetes service account in a trust domain."""

    trust_domain: str
    namespace: str
    service_account: str

    @property
    def spiffe(self) -> str:
        return spiffe_id(self.trust_domain, self.namespace, self.service_account)


class Authenticator(Protocol):
    def authenticate(self, token: str | None, *, cluster_id: str | None, now: float) -> Identity:
        """The caller's identity, or AuthenticationError saying why not."""
        ...


class KubeJwtAuthenticator:
    """Checks a cluster's service-account JWT as TokenReview would, then the audience."""

    def __init__(
        self,
        world: World,
        cluster: Cluster,
        *,
        trust_domain: str,
        cluster_id: str,
        audiences: Iterable[str] | None = None,
    ) -> None:
        self._world = world
        self._cluster = cluster
        self._trust_domain = trust_domain
        self._cluster_id = cluster_id
        self.audiences = tuple(audiences or (trust_domain, ISTIO_CA_AUDIENCE))

    def authenticate(self, token: str | None, *, cluster_id: str | None, now: float) -> Identity:
        if not token:
            raise AuthenticationError("no bearer token in the request (authorization metadata)")
        if cluster_id and cluster_id != self._cluster_id:
            raise AuthenticationError(
                f"client claims to be in cluster {cluster_id!r}, but this istiod only knows "
                f"cluster {self._cluster_id!r}"
            )
        try:
            claims = kube_tokens.verify(self._world, token, now=now)
        except kube_tokens.KubeTokenError as exc:
            raise AuthenticationError(f"failed to validate the JWT: {exc}") from exc
        if claims.get("iss") != self._cluster.issuer:
            raise AuthenticationError(
                f"the token was issued by {claims.get('iss')!r}, not by this cluster's API server"
            )
        audiences = kube_tokens.audiences_of(claims)
        if not set(audiences) & set(self.audiences):
            raise AuthenticationError(
                f"the token's audiences {audiences} include none of {list(self.audiences)}"
            )
        namespace, name = kube_tokens.service_account_of(claims)
        return Identity(self._trust_domain, namespace, name)


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    """A CSR from PEM, with a valid self-signature and a key type we sign."""
    if not pem.strip():
        raise CsrError("CSR parsing error: the csr field is empty")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise CsrError(f"CSR parsing error: not a PEM certificate request ({exc})") from exc
    if not csr.is_signature_valid:
        raise CsrError("CSR parsing error: the CSR's signature does not verify with its key")
    if not isinstance(csr.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise CsrError("CSR parsing error: only RSA and ECDSA keys are supported")
    return csr


def csr_identities(csr: x509.CertificateSigningRequest) -> list[str]:
    """The URI SANs a CSR asks for (informational: they are never copied into the cert)."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


class IstioCA:
    """Signs workload certificates for authenticated identities."""

    def __init__(
        self,
        signing_cert: x509.Certificate,
        signing_key: ec.EllipticCurvePrivateKey,
        root: x509.Certificate,
        *,
        default_ttl: int = DEFAULT_TTL,
        max_ttl: int = MAX_TTL,
    ) -> None:
        self._cert = signing_cert
        self._key = signing_key
        self._root = root
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl

    @classmethod
    def under(cls, pki: WorldPKI, name: str, **ttls: int) -> IstioCA:
        """A CA whose signing certificate is a fresh intermediate under the world root."""
        cert, key = pki.issue_intermediate(f"istiod {name} CA")
        return cls(cert, key, pki.root, **ttls)

    @property
    def root_pem(self) -> str:
        return self._root.public_bytes(_PEM).decode()

    @property
    def chain_tail(self) -> list[str]:
        """Everything after the leaf: the intermediate, then the root."""
        return [self._cert.public_bytes(_PEM).decode(), self.root_pem]

    def sign(self, csr_pem: str, identity: Identity, *, ttl: int, now: float) -> list[str]:
        """The chain for a CSR: leaf (SAN = the identity), intermediate, root."""
        csr = parse_csr(csr_pem)
        if ttl > self.max_ttl:
            raise TtlError(
                f"requested TTL {ttl}s is greater than the max allowed TTL {self.max_ttl}s"
            )
        lifetime = ttl if ttl > 0 else self.default_ttl
        public_key = csr.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
        return [self._leaf(public_key, identity, lifetime, now), *self.chain_tail]

    def issue(self, identity: Identity, *, now: float, ttl: int = 0) -> tuple[list[str], str]:
        """A fresh key and its chain: what Istio's agent obtains with a CSR, done in one step."""
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self._leaf(key.public_key(), identity, ttl or self.default_ttl, now)
        key_pem = key.private_bytes(
            _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return [leaf, *self.chain_tail], key_pem

    def _leaf(
        self,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        identity: Identity,
        lifetime: int,
        now: float,
    ) -> str:
        start = dt.datetime.fromtimestamp(now, dt.UTC)
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=True,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        # Istio's leaves have an empty subject, so the SAN extension must be critical (RFC 5280).
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(minutes=1))
            .not_valid_after(start + dt.timedelta(seconds=lifetime))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.spiffe)]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(_PEM).decode()


def make_csr(identity_uri: str, *, org: str = "") -> tuple[str, str]:
    """A PEM CSR and its PEM key, as a client would build them (for tests and tools)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity_uri)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return csr.public_bytes(_PEM).decode(), key_pem
