"""Workload keys and CSRs (pure: bytes in, bytes out).

EC P-256 by default: generating the key and CSR takes ~0.1 ms, an RSA-2048 key 11-109 ms
(docs/perf-baselines.md). The CSR carries the workload's SPIFFE id as its only URI SAN
(the original sent none) and `O=<trust domain>` as Istio's agent does. `cryptography` is
imported inside the functions: its x509 module costs ~35-70 ms to import, paid only when
a key is actually made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from krun.config import KeyType

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


def generate_key(key_type: KeyType = KeyType.EC_P256) -> CertificateIssuerPrivateKeyTypes:
    """A new private key of `key_type`."""
    if key_type is KeyType.RSA_2048:
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """PKCS#8 PEM, unencrypted (the file's mode protects it), as Envoy and Istio read it."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key: CertificateIssuerPrivateKeyTypes, *, spiffe_id: str, trust_domain: str) -> bytes:
    """A PEM CSR for `spiffe_id`, signed by `key` with SHA-256."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    from krun.errors import CertificateError  # noqa: PLC0415

    if not spiffe_id.startswith("spiffe://"):
        raise CertificateError(f"{spiffe_id!r} is not a SPIFFE id")
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
    )
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
