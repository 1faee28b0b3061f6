"""Security Token Service v1 (sts.googleapis.com): Kubernetes tokens -> federated tokens.

`POST /v1/token` exchanges a service-account token of one of the world's GKE
clusters for a Google access token of the workload identity
`principal://.../workloadIdentityPools/PROJECT.svc.id.goog/subject/ns/NS/sa/KSA`
(IAM also knows it as `serviceAccount:PROJECT.svc.id.goog[NS/KSA]`).

The body comes in two encodings, and both are accepted:

* `application/x-www-form-urlencoded` with RFC 8693 snake_case names: what
  google-auth's external-account flow sends;
* `application/json` with the proto's camelCase names (snake_case too, as
  every proto JSON parser allows): what the Go API client and the original
  krun send. The original sends no Content-Type at all, so a body without one
  is parsed as JSON when it starts with `{` and as a form otherwise.

The audience names the identity provider, in one of two forms:

* `identitynamespace:PROJECT.svc.id.goog:https://container.googleapis.com/v1/projects/P/locations/L/clusters/C`
  (what GKE's own metadata server, Istio and the original use): the cluster URL
  must be exactly the cluster's token issuer, the cluster must belong to the
  pool's project, and the token's `aud` must contain the trust domain;
* `//iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/providers/X`:
  POOL must be the project's `PROJECT.svc.id.goog` (the only pools the world
  has), the provider id is not checked (the world has no provider objects), the
  token may come from any cluster of that project, and its `aud` must contain
  the trust domain or this audience (also spelt with `https:`).

Errors are OAuth's (`{"error", "error_description"}`, status 400), as the real
service answers them. The federated token lives at most the world's token
lifetime and never beyond the subject token's own expiry (Google does not
document its rule; this one cannot leak a credential past its source).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator import kube_tokens
from emulator.asgi import (
    ASGIApp,
    QueryError,
    Request,
    Response,
    Router,
    json_api_app,
    parse_query,
)
from emulator.errors import EmulatorError, WorldLookupError
from emulator.world import DEFAULT_SCOPES, Principal

if TYPE_CHECKING:
    from emulator.world import Cluster, Project, World

HOSTNAMES = ("sts.googleapis.com",)

GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105 (a URN)
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 (a URN)
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN)
SUBJECT_TOKEN_TYPES = frozenset({TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN})
WORKLOAD_POOL_SUFFIX = ".svc.id.goog"

_FIELDS = {
    "grant_type": "grantType",
    "subject_token": "subjectToken",
    "subject_token_type": "subjectTokenType",
    "requested_token_type": "requestedTokenType",
    "audience": "audience",
    "scope": "scope",
    "resource": "resource",
    "actor_token": "actorToken",
    "actor_token_type": "actorTokenType",
    "options": "options",
}
"""Every request field: RFC 8693 (form) name -> proto JSON name."""
_BY_ANY_NAME = {**{k: k for k in _FIELDS}, **{v: k for k, v in _FIELDS.items()}}

_POOL_PROVIDER = re.compile(
    r"//iam\.googleapis\.com/projects/(?P<number>[0-9]{1,20})/locations/global/"
    r"workloadIdentityPools/(?P<pool>[^/\s]+)/providers/(?P<provider>[^/\s]+)"
)


class StsError(EmulatorError):
    """An exchange refused with an OAuth error code and a description of what was wrong."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


def _invalid_request(description: str) -> StsError:
    return StsError("invalid_request", description)


@dataclass(frozen=True, slots=True)
class IdentityNamespace:
    """`identitynamespace:TRUST_DOMAIN:CLUSTER_URL`."""

    trust_domain: str
    cluster_url: str


@dataclass(frozen=True, slots=True)
class PoolProvider:
    """`//iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/P/providers/X`."""

    project_number: int
    pool: str
    provider: str


Audience = IdentityNamespace | PoolProvider


@dataclass(frozen=True, slots=True)
class TokenRequest:
    subject_token: str
    subject_token_type: str
    audience: Audience
    audience_text: str
    scopes: tuple[str, ...]


# Pure parsing.


def parse_audience(text: str) -> Audience:
    """The identity provider an audience names; StsError(invalid_request) otherwise."""
    if text.startswith("identitynamespace:"):
        parts = text.split(":", 2)
        if len(parts) == 3 and parts[1] and parts[2]:
            return IdentityNamespace(parts[1], parts[2])
    else:
        match = _POOL_PROVIDER.fullmatch(text)
        if match is not None:
            return PoolProvider(int(match["number"]), match["pool"], match["provider"])
    raise _invalid_request(
        f"Invalid value for 'audience': {text[:200]!r}. It must name the identity provider, as "
        "'identitynamespace:TRUST_DOMAIN:CLUSTER_URL' or as the provider's full resource name "
        "'//iam.googleapis.com/projects/NUM/locations/global/workloadIdentityPools/POOL/"
        "providers/PROVIDER'."
    )


def parse_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The request's known fields under their RFC 8693 names; StsError on a bad body."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not media:
        media = "application/json" if body.lstrip().startswith(b"{") else _FORM
    if media == "application/json":
        return _json_fields(body)
    if media == _FORM:
        return _form_fields(body)
    raise _invalid_request(
        f"Unsupported Content-Type {media!r}: send application/x-www-form-urlencoded "
        "or application/json."
    )


_FORM = "application/x-www-form-urlencoded"


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_query(body)
    except QueryError as exc:
        raise _invalid_request(f"The request body is not a valid form: {exc}") from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        name = _BY_ANY_NAME.get(key)
        if name is None:
            continue  # RFC 6749 section 3.2: unrecognised parameters are ignored
        if name in fields:
            raise _invalid_request(f"The parameter {key!r} is given more than once.")
        fields[name] = value
    return fields


def _json_fields(body: bytes) -> dict[str, str]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid_request(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _invalid_request("The request body must be a JSON object.")
    fields: dict[str, str] = {}
    for key, value in document.items():
        name = _BY_ANY_NAME.get(key)
        if name is None:
            raise _invalid_request(f"Unknown field {key[:100]!r} in the request body.")
        if value is None:
            continue
        if not isinstance(value, str):
            raise _invalid_request(f"The field {key!r} must be a string.")
        if name in fields:
            raise _invalid_request(f"The field {_FIELDS[name]!r} is given more than once.")
        fields[name] = value
    return fields


def parse_token_request(content_type: str, body: bytes) -> TokenRequest:
    """Parse and check a `/v1/token` body; StsError names the first thing wrong."""
    fields = parse_fields(content_type, body)

    def required(name: str) -> str:
        value = fields.get(name, "")
        if not value:
            raise _invalid_request(f"Missing required parameter {name!r} ({_FIELDS[name]!r}).")
        return value

    grant_type = required("grant_type")
    if grant_type != GRANT_TYPE_TOKEN_EXCHANGE:
        raise StsError(
            "unsupported_grant_type",
            f"The grant type {grant_type[:200]!r} is not supported; "
            f"use {GRANT_TYPE_TOKEN_EXCHANGE!r}.",
        )
    subject_token = required("subject_token")
    subject_token_type = required("subject_token_type")
    if subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise _invalid_request(
            f"Invalid value for 'subject_token_type': {subject_token_type[:200]!r}; "
            f"a Kubernetes token is {TOKEN_TYPE_JWT!r}."
        )
    requested = required("requested_token_type")
    if requested != TOKEN_TYPE_ACCESS_TOKEN:
        raise _invalid_request(
            f"Invalid value for 'requested_token_type': {requested[:200]!r}; "
            f"only {TOKEN_TYPE_ACCESS_TOKEN!r} is issued."
        )
    audience_text = required("audience")
    audience = parse_audience(audience_text)
    scopes = tuple(fields.get("scope", "").split()) or DEFAULT_SCOPES
    return TokenRequest(subject_token, subject_token_type, audience, audience_text, scopes)


# The exchange, against the world.


def exchange(world: World, request: TokenRequest, *, now: float) -> dict[str, Any]:
    """The token response for a parsed request; StsError when the world refuses it."""
    project, cluster, accepted = _target(world, request)
    try:
        claims = kube_tokens.verify(world, request.subject_token, now=now)
    except kube_tokens.TokenExpiredError as exc:
        raise StsError("invalid_grant", f"The subject token has expired: {exc}.") from exc
    except kube_tokens.UnknownIssuerError as exc:
        raise StsError("invalid_grant", f"The subject token's issuer is unknown: {exc}.") from exc
    except kube_tokens.BadSignatureError as exc:
        raise StsError("invalid_grant", f"Invalid subject token signature: {exc}.") from exc
    except kube_tokens.KubeTokenError as exc:
        raise StsError("invalid_grant", f"Invalid subject token: {exc}.") from exc
    issuer = claims["iss"]
    if cluster is not None and issuer != cluster.issuer:
        raise StsError(
            "invalid_grant",
            f"The subject token was issued by {issuer!r}, not by the identity provider "
            f"{cluster.issuer!r} named in the audience.",
        )
    if cluster is None and kube_tokens.find_cluster(world, issuer).project_id != project.id:
        raise StsError(
            "invalid_grant",
            f"The subject token's issuer {issuer!r} is not a cluster of project "
            f"{project.id!r}, which owns the pool.",
        )
    audiences = kube_tokens.audiences_of(claims)
    if not set(accepted).intersection(audiences):
        raise StsError(
            "invalid_grant",
            f"The audience in the subject token {audiences} does not match the expected "
            f"audience {accepted[0]!r}.",
        )
    namespace, name = kube_tokens.service_account_of(claims)
    lifetime = min(world.token_lifetime, int(claims["exp"] - now))
    if lifetime <= 0:
        raise StsError("invalid_grant", "The subject token has expired.")
    principal = Principal.for_workload(project.number, _pool(project), namespace, name)
    token = world.tokens.issue_access_token(principal, request.scopes, now=now, lifetime=lifetime)
    return {
        "access_token": token.token,
        "issued_token_type": TOKEN_TYPE_ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": lifetime,
    }


def _pool(project: Project) -> str:
    return project.id + WORKLOAD_POOL_SUFFIX


def _unknown_target(what: str) -> StsError:
    return StsError(
        "invalid_target",
        f"The target service indicated by the 'audience' parameter is invalid: {what}.",
    )


def _target(world: World, request: TokenRequest) -> tuple[Project, Cluster | None, tuple[str, ...]]:
    """The pool's project, the cluster the audience names (if any), and the accepted `aud`s."""
    audience = request.audience
    if isinstance(audience, IdentityNamespace):
        domain = audience.trust_domain
        project_id = domain.removesuffix(WORKLOAD_POOL_SUFFIX)
        try:
            project = world.project(project_id)
        except WorldLookupError:
            project = None
        if project is None or project_id == domain or project_id.isdigit():
            raise _unknown_target(f"there is no workload identity pool {domain!r}")
        for cluster in world.all_clusters():
            if cluster.issuer != audience.cluster_url:
                continue
            if cluster.project_id != project.id:
                raise _unknown_target(
                    f"cluster {audience.cluster_url!r} does not belong to the pool {domain!r}"
                )
            return project, cluster, (domain,)
        raise _unknown_target(
            f"there is no cluster {audience.cluster_url!r} (the cluster URL must be "
            "https://container.googleapis.com/v1/projects/PROJECT_ID/locations/LOCATION/"
            "clusters/NAME, exactly the issuer of the cluster's tokens)"
        )
    try:
        project = world.project(str(audience.project_number))
    except WorldLookupError:
        raise _unknown_target(f"there is no project number {audience.project_number}") from None
    if audience.pool != _pool(project):
        raise _unknown_target(
            f"project {audience.project_number} has no workload identity pool {audience.pool!r}"
        )
    https = "https:" + request.audience_text
    return project, None, (_pool(project), request.audience_text, https)


# The service.


def _oauth_error(error: StsError) -> Response:
    return Response.json({"error": error.error, "error_description": error.description}, 400)


def create_app(world: World) -> ASGIApp:
    router = Router()

    async def token(request: Request) -> Response:
        try:
            parsed = parse_token_request(request.header("content-type") or "", request.body)
            return Response.json(exchange(world, parsed, now=world.clock()))
        except StsError as exc:
            return _oauth_error(exc)

    router.add("POST", r"/v1/token", token)
    return json_api_app(router, service="sts")
