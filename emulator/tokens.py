"""Tokens of the world: opaque access tokens and RS256-signed Google ID tokens.

Access tokens look like Google's (`ya29.` followed by opaque text) and resolve,
in every emulated service, to the principal they were issued to and an expiry.
ID tokens are JWTs signed by a world key whose public half is served where
Google serves its own (`/oauth2/v1/certs` as PEM certificates, `/oauth2/v3/certs`
as a JWKS), so unmodified verifiers accept them.

Every method takes `now` (seconds since the epoch): the world owns the clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from emulator.world import Principal

GOOGLE_ISSUER = "https://accounts.google.com"
ACCESS_TOKEN_PREFIX = "ya29."  # noqa: S105 - the public shape of Google access tokens


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    principal: Principal
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now))


def b64url_uint(value: int) -> str:
    """An RSA number as a JWK writes it: big-endian bytes, base64url without padding."""
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenAuthority:
    """Issues and resolves the world's Google tokens."""

    def __init__(self) -> None:
        self._access: dict[str, AccessToken] = {}
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = _key_id(public)
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    # Access tokens.

    def issue_access_token(
        self, principal: Principal, scopes: tuple[str, ...], *, now: float, lifetime: int
    ) -> AccessToken:
        token = AccessToken(
            token=ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(48),
            principal=principal,
            scopes=scopes,
            issued_at=now,
            expires_at=now + lifetime,
        )
        with self._lock:
            self._prune(now)
            self._access[token.token] = token
        return token

    def resolve_access_token(self, token: str, *, now: float) -> AccessToken | None:
        """The token's record, or None when it is unknown or expired."""
        with self._lock:
            found = self._access.get(token)
        if found is None or found.expires_at <= now:
            return None
        return found

    def _prune(self, now: float) -> None:
        if len(self._access) > 10_000:
            self._access = {k: v for k, v in self._access.items() if v.expires_at > now}

    # ID tokens.

    def sign_id_token(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})

    def id_token(
        self,
        *,
        subject: str,
        audience: str,
        now: float,
        lifetime: int = 3600,
        email: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """An ID token shaped like Google's for a service account (`sub` = its unique id)."""
        claims: dict[str, Any] = {
            "aud": audience,
            "azp": subject,
            "exp": int(now) + lifetime,
            "iat": int(now),
            "iss": GOOGLE_ISSUER,
            "sub": subject,
        }
        if email is not None:
            claims["email"] = email
            claims["email_verified"] = True
        claims.update(extra or {})
        return self.sign_id_token(claims)

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.key_id,
                    "n": b64url_uint(numbers.n),
                    "e": b64url_uint(numbers.e),
                }
            ]
        }

    def pem_certs(self) -> dict[str, str]:
        """The `/oauth2/v1/certs` form: key id -> PEM certificate."""
        return {self.key_id: self._cert.public_bytes(serialization.Encoding.PEM).decode()}


def _key_id(public_der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA1())  # noqa: S303 - a key id, not a security function
    digest.update(public_der)
    return digest.finalize().hex()
