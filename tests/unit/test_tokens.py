"""Access tokens resolve until they expire; ID tokens verify against the published keys."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.tokens import GOOGLE_ISSUER, TokenAuthority
from emulator.world import Principal

AUTHORITY = TokenAuthority()
WHO = Principal.for_email("a@p.iam.gserviceaccount.com")


def test_access_token_resolves_until_expiry() -> None:
    """A token is known for exactly its lifetime on the caller's clock."""
    token = AUTHORITY.issue_access_token(WHO, ("s",), now=1000, lifetime=60)
    assert token.token.startswith("ya29.")
    assert token == AUTHORITY.resolve_access_token(token.token, now=1059)
    assert AUTHORITY.resolve_access_token(token.token, now=1060) is None
    assert AUTHORITY.resolve_access_token("ya29.unknown", now=1000) is None


def test_id_token_verifies_with_jwks_and_pem() -> None:
    """Both published forms of the key verify the token, with Google's claims."""
    token = AUTHORITY.id_token(subject="123", audience="https://x", now=time.time(), email="a@b")
    header = jwt.get_unverified_header(token)
    assert AUTHORITY.key_id == header["kid"]
    jwk = jwt.PyJWK(AUTHORITY.jwks()["keys"][0])
    claims = jwt.decode(
        token, jwk.key, algorithms=["RS256"], audience="https://x", issuer=GOOGLE_ISSUER
    )
    assert ("123", "a@b", True) == (claims["sub"], claims["email"], claims["email_verified"])
    cert = x509.load_pem_x509_certificate(AUTHORITY.pem_certs()[AUTHORITY.key_id].encode())
    assert claims == jwt.decode(
        token, _rsa(cert.public_key()), algorithms=["RS256"], audience="https://x"
    )


def test_id_token_from_another_authority_fails() -> None:
    """A token signed by a different world does not verify with this world's key."""
    other = TokenAuthority().id_token(subject="1", audience="a", now=time.time())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(other, AUTHORITY.public_key, algorithms=["RS256"], audience="a")


def _rsa(key: object) -> rsa.RSAPublicKey:
    assert isinstance(key, rsa.RSAPublicKey)
    return key
