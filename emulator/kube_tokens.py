"""Kubernetes service-account tokens of the world's GKE clusters: mint and verify.

A token is what the TokenRequest API of a GKE cluster returns: an RS256 JWT
signed with the cluster's `sa_signing_key`, `iss` = the cluster's issuer URL,
`sub` = `system:serviceaccount:NS:NAME`, `aud` a list, `exp`/`iat`/`nbf`, a
`jti`, and the `kubernetes.io` claim (namespace, service account, optionally
the pod it is bound to). The header carries `kid` (the base64url SHA-256 of the
public key, as kube-apiserver computes it) and no `typ`, as on a real cluster.

Pure: no I/O, and time is the caller's `now`, because the world owns the clock
and tests move it.

* KubeTokenError
  x MalformedTokenError   not a JWT, wrong algorithm, or claims of the wrong shape
  x UnknownIssuerError    `iss` is not the issuer of any cluster of the world
  x BadSignatureError     not signed by that cluster's key
  x TokenExpiredError     `exp` has passed
  x TokenNotYetValidError `nbf` is still ahead
  x WrongAudienceError    the expected audience is not in `aud`
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization

from emulator.errors import EmulatorError
from emulator.tokens import b64url_uint

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from emulator.world import Cluster, World

SUBJECT_PREFIX = "system:serviceaccount:"
DEFAULT_LIFETIME = 3600
"""What a TokenRequest without `expirationSeconds` gets on GKE: one hour."""


class KubeTokenError(EmulatorError):
    """A Kubernetes service-account token was refused; the message says why."""


class MalformedTokenError(KubeTokenError):
    """The token is not a JWT of the expected shape."""


class UnknownIssuerError(KubeTokenError):
    """The token's issuer is not a cluster of the world."""


class BadSignatureError(KubeTokenError):
    """The signature does not verify with the issuing cluster's key."""


class TokenExpiredError(KubeTokenError):
    """The token's `exp` is at or before now."""


class TokenNotYetValidError(KubeTokenError):
    """The token's `nbf` is after now."""


class WrongAudienceError(KubeTokenError):
    """The expected audience is not among the token's audiences."""


def key_id(cluster: Cluster) -> str:
    """The `kid` kube-apiserver puts in its tokens: base64url(SHA-256(public key DER))."""
    der = (
        _signing_key(cluster)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def jwks(cluster: Cluster) -> dict[str, Any]:
    """The cluster's `/openid/v1/jwks` document."""
    numbers = _signing_key(cluster).public_key().public_numbers()
    return {
        "keys": [
            {
                "use": "sig",
                "kty": "RSA",
                "kid": key_id(cluster),
                "alg": "RS256",
                "n": b64url_uint(numbers.n),
                "e": b64url_uint(numbers.e),
            }
        ]
    }


def service_account_uid(cluster: Cluster, namespace: str, name: str) -> str:
    """A stable UID for a service account that the caller did not give one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cluster.issuer}#{namespace}/{name}"))


def mint(
    cluster: Cluster,
    namespace: str,
    name: str,
    audiences: Sequence[str],
    *,
    now: float,
    lifetime: int = DEFAULT_LIFETIME,
    sa_uid: str | None = None,
    pod: tuple[str, str] | None = None,
    jti: str | None = None,
) -> str:
    """A token for `namespace/name` in `cluster`; `pod` is (name, uid) for a bound token."""
    if not namespace or not name:
        raise ValueError("a service-account token needs a namespace and a name")
    if not audiences:
        raise ValueError("a service-account token needs at least one audience")
    if lifetime <= 0:
        raise ValueError(f"lifetime must be positive, not {lifetime}")
    issued = int(now)
    kube: dict[str, Any] = {
        "namespace": namespace,
        "serviceaccount": {
            "name": name,
            "uid": sa_uid or service_account_uid(cluster, namespace, name),
        },
    }
    if pod is not None:
        kube["pod"] = {"name": pod[0], "uid": pod[1]}
    claims: dict[str, Any] = {
        "aud": list(audiences),
        "exp": issued + lifetime,
        "iat": issued,
        "iss": cluster.issuer,
        "jti": jti or str(uuid.uuid4()),
        "kubernetes.io": kube,
        "nbf": issued,
        "sub": f"{SUBJECT_PREFIX}{namespace}:{name}",
    }
    # kube-apiserver sends no `typ` header; PyJWT drops it when given a falsy value.
    headers = {"kid": key_id(cluster), "typ": None}
    return jwt.encode(claims, _signing_key(cluster), algorithm="RS256", headers=headers)


def find_cluster(world: World, issuer: str) -> Cluster:
    """The cluster whose tokens carry `iss` = `issuer`."""
    return _find_cluster(world.all_clusters(), issuer)


def verify(
    world: World, token: str, *, now: float, expected_audience: str | None = None
) -> dict[str, Any]:
    """The token's claims after checking issuer, signature, shape, time and audience."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise MalformedTokenError(f"the token is not a valid JWT: {exc}") from exc
    if header.get("alg") != "RS256":
        raise MalformedTokenError(f"the token is signed with {header.get('alg')!r}, not RS256")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str):
        raise MalformedTokenError("the token has no string 'iss' claim")
    cluster = find_cluster(world, issuer)
    try:
        # Time and audience are checked below against the world clock, not the host's.
        claims: dict[str, Any] = jwt.decode(
            token,
            _signing_key(cluster).public_key(),
            algorithms=["RS256"],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise BadSignatureError(
            f"the token's signature does not verify with the key of cluster {cluster.issuer}"
        ) from exc
    except jwt.PyJWTError as exc:
        raise MalformedTokenError(f"the token is not a valid JWT: {exc}") from exc
    _check_shape(claims)
    if claims["exp"] <= now:
        raise TokenExpiredError(
            f"the token expired at {claims['exp']} ({int(now - claims['exp'])}s ago)"
        )
    if "nbf" in claims and claims["nbf"] > now:
        raise TokenNotYetValidError(f"the token is not valid before {claims['nbf']}")
    if expected_audience is not None and expected_audience not in audiences_of(claims):
        raise WrongAudienceError(
            f"the token's audiences {audiences_of(claims)} do not include {expected_audience!r}"
        )
    return claims


def audiences_of(claims: dict[str, Any]) -> list[str]:
    """`aud` as a list (a JWT may carry a single string)."""
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else list(aud or [])


def service_account_of(claims: dict[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a verified token's subject."""
    namespace, _, name = claims["sub"][len(SUBJECT_PREFIX) :].partition(":")
    return namespace, name


def _check_shape(claims: dict[str, Any]) -> None:
    for name in ("exp", "iat"):
        if not isinstance(claims.get(name), int) or isinstance(claims.get(name), bool):
            raise MalformedTokenError(f"the token's {name!r} claim is not an integer")
    if "nbf" in claims and (not isinstance(claims["nbf"], int) or isinstance(claims["nbf"], bool)):
        raise MalformedTokenError("the token's 'nbf' claim is not an integer")
    aud = claims.get("aud")
    if not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise MalformedTokenError("the token's 'aud' claim is neither a string nor a list of them")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.startswith(SUBJECT_PREFIX):
        raise MalformedTokenError(
            f"the token's subject {subject!r} is not a service account ({SUBJECT_PREFIX}NS:NAME)"
        )
    namespace, sep, name = subject[len(SUBJECT_PREFIX) :].partition(":")
    if not (namespace and sep and name) or ":" in name:
        raise MalformedTokenError(f"the token's subject {subject!r} is not {SUBJECT_PREFIX}NS:NAME")


def _find_cluster(clusters: Iterable[Cluster], issuer: str) -> Cluster:
    for cluster in clusters:
        if cluster.issuer == issuer:
            return cluster
    raise UnknownIssuerError(f"the issuer {issuer!r} is not a cluster of this world")


def _signing_key(cluster: Cluster) -> RSAPrivateKey:
    if cluster.sa_signing_key is None:
        raise ValueError(f"cluster {cluster.issuer} has no service-account signing key")
    return cluster.sa_signing_key
