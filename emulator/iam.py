"""IAM Credentials v1 (iamcredentials.googleapis.com): short-lived service-account tokens.

* `POST /v1/projects/-/serviceAccounts/{EMAIL_OR_UNIQUE_ID}:generateAccessToken`
  `{scope: [...], lifetime: "3600s", delegates: [...]}` -> `{accessToken, expireTime}`;
  `lifetime` may also be the object `{"seconds": 3600}` the original krun sends.
* `POST .../{EMAIL_OR_UNIQUE_ID}:generateIdToken`
  `{audience, includeEmail, delegates}` -> `{token}`, a Google ID token whose
  `sub` is the account's unique id.

The caller is the Bearer access token (any world token: a service account's,
a user's, or a federated workload's from STS). Its principal needs
`iam.serviceAccounts.getAccessToken` (or `getOpenIdToken`) on the target.

Delegation chains are supported as Google documents them: with delegates
`[A, B]` the caller needs the permission on A, A on B, and B on the target.

The project segment of the path is not checked: Google documents `-` and
resolves the account by email or unique id alone. `signJwt` and `signBlob`
are not served: the world has no per-account keys to sign with.

Errors are Google JSON errors: 401 UNAUTHENTICATED without a valid token,
403 PERMISSION_DENIED when the permission is missing *or* the account does not
exist (Google does not tell the two apart), 400 FAILED_PRECONDITION for a
disabled account, 400 INVALID_ARGUMENT for a bad body.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emulator.asgi import ASGIApp, Request, Response, Router, google_error, json_api_app
from emulator.errors import EmulatorError, WorldLookupError
from emulator.world import Principal

if TYPE_CHECKING:
    from emulator.world import ServiceAccount, World

HOSTNAMES = ("iamcredentials.googleapis.com",)

GET_ACCESS_TOKEN = "iam.serviceAccounts.getAccessToken"  # noqa: S105 (a permission)
GET_OPENID_TOKEN = "iam.serviceAccounts.getOpenIdToken"  # noqa: S105 (a permission)
MAX_LIFETIME = 3600
"""Without the org-policy exception Google grants on request, one hour is the limit."""
ID_TOKEN_LIFETIME = 3600
CALLER_SCOPES = frozenset(
    {"https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/iam"}
)
"""A caller's token must carry one of these scopes to use the API at all."""

_DURATION = re.compile(r"(?P<seconds>[0-9]{1,12})(?:\.[0-9]{1,9})?s")
_DELEGATE = re.compile(r"projects/-/serviceAccounts/(?P<account>[^/]+)")
_ACCESS_FIELDS = {
    "name": "name",
    "delegates": "delegates",
    "scope": "scope",
    "lifetime": "lifetime",
}
_ID_FIELDS = {
    "name": "name",
    "delegates": "delegates",
    "audience": "audience",
    "includeEmail": "includeEmail",
    "include_email": "includeEmail",
    "organizationNumberIncluded": "organizationNumberIncluded",
    "organization_number_included": "organizationNumberIncluded",
}
"""Accepted JSON names -> canonical name (proto JSON parsers accept both spellings)."""


class IamError(EmulatorError):
    """A refused call: the HTTP code, Google's status string and a message."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: str | None = None,
        details: list[Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details

    def response(self) -> Response:
        response = google_error(self.code, self.message, status=self.status, details=self.details)
        if self.code == 401:
            response.headers.append(
                ("www-authenticate", 'Bearer realm="https://accounts.google.com/"')
            )
        return response


def _invalid(message: str) -> IamError:
    return IamError(400, message)


@dataclass(frozen=True, slots=True)
class AccessTokenRequest:
    scopes: tuple[str, ...]
    lifetime: int
    delegates: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IdTokenRequest:
    audience: str
    include_email: bool
    delegates: tuple[str, ...]


# Pure parsing.


def parse_lifetime(value: Any) -> int:
    """Whole seconds from `"3600s"` or `{"seconds": 3600[, "nanos": N]}`; None is one hour."""
    if value is None:
        return MAX_LIFETIME
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise _invalid(f"Invalid value for 'lifetime': {value[:100]!r} is not a duration.")
        seconds = int(match["seconds"])
    elif isinstance(value, dict):
        unknown = set(value) - {"seconds", "nanos"}
        if unknown:
            raise _invalid(f"Invalid value for 'lifetime': unknown field {min(unknown)!r}.")
        raw = value.get("seconds", 0)
        # int64 seconds arrive as JSON strings; as in the string form, at most 12 digits.
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 12:
            raw = int(raw)
        if (
            not isinstance(raw, int)
            or isinstance(raw, bool)
            or not isinstance(value.get("nanos", 0), int)
        ):
            raise _invalid("Invalid value for 'lifetime': seconds and nanos must be integers.")
        seconds = raw
    else:
        raise _invalid("Invalid value for 'lifetime': expected a duration such as '3600s'.")
    if seconds <= 0:
        raise _invalid(f"The lifetime must be positive, not {seconds}s.")
    if seconds > MAX_LIFETIME:
        raise _invalid(
            f"The lifetime requested ({seconds}s) exceeds the maximum of {MAX_LIFETIME}s."
        )
    return seconds


def _fields(body: Any, known: dict[str, str]) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received: the body must be a JSON object.")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        name = known.get(key)
        if name is None:
            raise _invalid(
                f'Invalid JSON payload received. Unknown name "{key[:100]}": no such field.'
            )
        if value is not None:
            fields[name] = value
    return fields


def parse_delegates(value: Any) -> tuple[str, ...]:
    """Account ids (emails or unique ids) from `projects/-/serviceAccounts/ID` names."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("Invalid value for 'delegates': expected a list of strings.")
    accounts = []
    for name in value:
        match = _DELEGATE.fullmatch(name)
        if match is None:
            raise _invalid(
                f"Invalid delegate {name[:200]!r}: use projects/-/serviceAccounts/EMAIL_OR_ID."
            )
        accounts.append(match["account"])
    return tuple(accounts)


def parse_access_token_request(body: Any) -> AccessTokenRequest:
    """The fields of a generateAccessToken body; IamError(400) names what is wrong."""
    fields = _fields(body, _ACCESS_FIELDS)
    scope = fields.get("scope")
    if not isinstance(scope, list) or not all(isinstance(s, str) and s for s in scope):
        raise _invalid("Invalid value for 'scope': expected a list of OAuth scopes.")
    if not scope:
        raise _invalid("The 'scope' field is required: name at least one OAuth scope.")
    return AccessTokenRequest(
        scopes=tuple(scope),
        lifetime=parse_lifetime(fields.get("lifetime")),
        delegates=parse_delegates(fields.get("delegates")),
    )


def parse_id_token_request(body: Any) -> IdTokenRequest:
    """The fields of a generateIdToken body; IamError(400) names what is wrong."""
    fields = _fields(body, _ID_FIELDS)
    audience = fields.get("audience", "")
    if not isinstance(audience, str):
        raise _invalid("Invalid value for 'audience': expected a string.")
    if not audience:
        raise _invalid("The 'audience' field is required for an ID token.")
    include_email = fields.get("includeEmail", False)
    if not isinstance(include_email, bool):
        raise _invalid("Invalid value for 'includeEmail': expected true or false.")
    return IdTokenRequest(audience, include_email, parse_delegates(fields.get("delegates")))


def rfc3339(seconds: float) -> str:
    """`2026-01-01T00:00:00Z`: whole seconds, as Google writes expireTime and clients parse it."""
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Authorization against the world.


def _denied(permission: str) -> IamError:
    return IamError(
        403,
        f"Permission '{permission}' denied on resource (or it may not exist).",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": permission},
            }
        ],
    )


def authenticate(world: World, request: Request, *, now: float) -> Principal:
    """The caller's principal from its Bearer token; IamError 401/403 otherwise."""
    token = request.bearer_token()
    if token is None:
        raise IamError(
            401,
            "Request is missing required authentication credential: "
            "expected an OAuth 2 access token as 'Authorization: Bearer'.",
        )
    record = world.tokens.resolve_access_token(token, now=now)
    if record is None:
        raise IamError(
            401,
            "Request had invalid authentication credentials: the OAuth 2 access token "
            "is unknown or has expired.",
        )
    if CALLER_SCOPES.isdisjoint(record.scopes):
        raise IamError(
            403,
            "Request had insufficient authentication scopes.",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                    "metadata": {"service": "iamcredentials.googleapis.com"},
                }
            ],
        )
    return record.principal


def authorize(
    world: World,
    caller: Principal,
    permission: str,
    account_id: str,
    delegates: tuple[str, ...] = (),
) -> ServiceAccount:
    """The target account, once every hop of the delegation chain holds `permission`."""
    principal = caller
    for hop_id in delegates:
        principal = Principal.for_email(_hop(world, principal, permission, hop_id).email)
    return _hop(world, principal, permission, account_id)


def _hop(world: World, principal: Principal, permission: str, account_id: str) -> ServiceAccount:
    try:
        account = world.service_account(account_id)
    except WorldLookupError:
        raise _denied(permission) from None
    if not world.allowed_on_account(principal, permission, account):
        raise _denied(permission)
    if account.disabled:
        raise IamError(
            400,
            f"Precondition check failed: service account {account.email} is disabled.",
            status="FAILED_PRECONDITION",
        )
    return account


# The service.


def create_app(world: World) -> ASGIApp:
    router = Router()

    def body_of(request: Request) -> Any:
        try:
            return request.json()
        except ValueError as exc:
            raise _invalid(f"Invalid JSON payload received: {exc}") from exc

    async def generate_access_token(request: Request, account: str) -> Response:
        now = world.clock()
        caller = authenticate(world, request, now=now)
        wanted = parse_access_token_request(body_of(request))
        target = authorize(world, caller, GET_ACCESS_TOKEN, account, wanted.delegates)
        token = world.tokens.issue_access_token(
            Principal.for_email(target.email), wanted.scopes, now=now, lifetime=wanted.lifetime
        )
        return Response.json({"accessToken": token.token, "expireTime": rfc3339(token.expires_at)})

    async def generate_id_token(request: Request, account: str) -> Response:
        now = world.clock()
        caller = authenticate(world, request, now=now)
        wanted = parse_id_token_request(body_of(request))
        target = authorize(world, caller, GET_OPENID_TOKEN, account, wanted.delegates)
        token = world.tokens.id_token(
            subject=target.unique_id,
            audience=wanted.audience,
            email=target.email if wanted.include_email else None,
            now=now,
            lifetime=ID_TOKEN_LIFETIME,
        )
        return Response.json({"token": token})

    methods = {
        "generateAccessToken": generate_access_token,
        "generateIdToken": generate_id_token,
    }

    async def call(request: Request, account: str, method: str) -> Response:
        handler = methods.get(method)
        if handler is None:
            return google_error(404, f"iamcredentials: no such method: {method}")
        try:
            return await handler(request, account)
        except IamError as exc:
            return exc.response()

    router.add(
        "POST",
        r"/v1/projects/[^/]+/serviceAccounts/(?P<account>[^/:]+):(?P<method>[A-Za-z]+)",
        call,
    )
    return json_api_app(router, service="iamcredentials")
