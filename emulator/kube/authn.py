"""Who a bearer token speaks for on an emulated GKE API server.

Three authenticators, tried in the order that makes each token's shape decide:

* the cluster's static admin token -> `system:admin` in `system:masters`
  (a test credential; GKE has no such thing, kubeadm clusters have its like);
* a Google access token the world issued (`ya29.`) -> the Google account's
  email as the user name, in `system:authenticated`, as GKE maps them;
* a Kubernetes service-account token of *this* cluster, for one of the API
  audiences, whose service account (and bound pod) still exists ->
  `system:serviceaccount:NS:NAME` in `system:serviceaccounts`,
  `system:serviceaccounts:NS` and `system:authenticated`, with the
  `authentication.kubernetes.io/credential-id` (and pod) extras.

No token: `system:anonymous`. A token none accepts: 401, as on the real server.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from emulator.asgi import parse_bearer
from emulator.kube import status
from emulator.kube.rbac import ANONYMOUS, AUTHENTICATED, MASTERS, UserInfo, service_account_user
from emulator.kube_tokens import KubeTokenError, audiences_of, service_account_of, verify
from emulator.tokens import ACCESS_TOKEN_PREFIX
from emulator.world import Cluster, World

ADMIN_USER = "system:admin"


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: UserInfo
    audiences: tuple[str, ...] = ()
    """The audiences the token was accepted for (service-account tokens only)."""


class TokenRejectedError(Exception):
    """The token is not valid for this cluster; the message says why (for TokenReview)."""


ObjectLookup = Callable[[str, str, str], dict[str, Any] | None]
"""(resource, namespace, name) -> the stored object, or None."""


def authenticate_token(
    token: str,
    *,
    world: World,
    cluster: Cluster,
    admin_token: str,
    audiences: Sequence[str],
    lookup: ObjectLookup,
) -> Authenticated:
    """Who the token speaks for, given the acceptable audiences; TokenRejectedError if none."""
    now = world.clock()
    if hmac.compare_digest(token.encode(), admin_token.encode()):
        return Authenticated(UserInfo(ADMIN_USER, (MASTERS, AUTHENTICATED)))
    if token.startswith(ACCESS_TOKEN_PREFIX):
        found = world.tokens.resolve_access_token(token, now=now)
        if found is None:
            raise TokenRejectedError("the Google access token is unknown or expired")
        principal = found.principal
        return Authenticated(UserInfo(principal.email or principal.subject, (AUTHENTICATED,)))
    try:
        claims = verify(world, token, now=now)
    except KubeTokenError as exc:
        raise TokenRejectedError(f"invalid bearer token, {exc}") from exc
    if claims["iss"] != cluster.issuer:
        raise TokenRejectedError(
            f"invalid bearer token, the token was issued by {claims['iss']}, not this cluster"
        )
    accepted = tuple(a for a in audiences_of(claims) if a in audiences)
    if not accepted:
        raise TokenRejectedError(
            f"invalid bearer token, token audiences {audiences_of(claims)} is invalid for the "
            f"target audiences {list(audiences)}"
        )
    namespace, name = service_account_of(claims)
    kube = claims.get("kubernetes.io") or {}
    account = lookup("serviceaccounts", namespace, name)
    wanted_uid = (kube.get("serviceaccount") or {}).get("uid")
    if account is None or (wanted_uid and account["metadata"]["uid"] != wanted_uid):
        raise TokenRejectedError(
            f"invalid bearer token, service account {namespace}/{name} has been deleted"
        )
    extra: dict[str, str] = {}
    if claims.get("jti"):
        extra["authentication.kubernetes.io/credential-id"] = f"JTI={claims['jti']}"
    pod = kube.get("pod")
    if isinstance(pod, dict):
        stored = lookup("pods", namespace, str(pod.get("name")))
        if stored is None or stored["metadata"]["uid"] != pod.get("uid"):
            raise TokenRejectedError(
                f"invalid bearer token, pod {namespace}/{pod.get('name')} the token is bound "
                "to no longer exists"
            )
        extra["authentication.kubernetes.io/pod-name"] = str(pod.get("name"))
        extra["authentication.kubernetes.io/pod-uid"] = str(pod.get("uid"))
    user = service_account_user(namespace, name, account["metadata"]["uid"])
    if extra:
        user = UserInfo(user.name, user.groups, user.uid, {k: (v,) for k, v in extra.items()})
    return Authenticated(user, accepted)


def authenticate_header(
    authorization: str | None,
    *,
    world: World,
    cluster: Cluster,
    admin_token: str,
    audiences: Sequence[str],
    lookup: ObjectLookup,
) -> UserInfo:
    """The user of a request from its Authorization header; StatusError 401 for a bad token."""
    if authorization is None:
        return ANONYMOUS
    token = parse_bearer(authorization)
    if token is None:
        raise status.unauthorized()
    try:
        return authenticate_token(
            token,
            world=world,
            cluster=cluster,
            admin_token=admin_token,
            audiences=audiences,
            lookup=lookup,
        ).user
    except TokenRejectedError:
        raise status.unauthorized() from None
