"""What every emulated Google JSON/gRPC API shares: its front end's errors and auth.

Google's front end answers before any service: 401 for missing or unknown
credentials, 403 for insufficient scopes, 400 for a bad `x-goog-user-project`.
`ApiError` renders one error both ways: Google's JSON body over REST, and a gRPC
status with a `google.rpc.Status` in `grpc-status-details-bin`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2  # type: ignore[import-untyped]
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from emulator.asgi import GOOGLE_STATUS, Request, Response
from emulator.errors import WorldLookupError
from emulator.grpc_asgi import HTTP_TO_GRPC
from emulator.world import Principal, World

_AUTH_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_REALM = 'Bearer realm="https://accounts.google.com/"'
_LEGACY_REASONS = {400: "badRequest", 403: "forbidden", 404: "notFound"}


# Errors, shaped like Google's on both transports.


@dataclass(slots=True)
class ApiError(Exception):
    """A Google API error: HTTP status, message and an optional google.rpc.ErrorInfo."""

    code: int
    message: str
    reason: str | None = None
    """ErrorInfo.reason; None sends no ErrorInfo detail."""
    domain: str = "googleapis.com"
    metadata: dict[str, str] = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)
    legacy: bool = True
    """Add the v1-era `errors: [{message, domain, reason}]` list (GKE and CRM v1 do)."""

    def __str__(self) -> str:
        return f"{self.code} {self.message}"

    @property
    def status(self) -> str:
        return GOOGLE_STATUS.get(self.code, "UNKNOWN")

    def rest_response(self) -> Response:
        """The JSON body Google's front end sends, key order included."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        legacy_reason = _LEGACY_REASONS.get(self.code)
        if self.legacy and legacy_reason is not None:
            error["errors"] = [
                {"message": self.message, "domain": "global", "reason": legacy_reason}
            ]
        error["status"] = self.status
        if self.reason is not None:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason,
                    "domain": self.domain,
                    "metadata": dict(self.metadata),
                }
            ]
        return Response.json({"error": error}, self.code, list(self.headers))

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return HTTP_TO_GRPC.get(self.code, grpc.StatusCode.UNKNOWN)

    def grpc_status_details(self) -> bytes:
        """A serialized google.rpc.Status for the `grpc-status-details-bin` trailer."""
        status = status_pb2.Status(code=self.grpc_code.value[0], message=self.message)
        if self.reason is not None:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.ErrorInfo(
                    reason=self.reason, domain=self.domain, metadata=self.metadata
                )
            )
            status.details.append(detail)
        encoded: bytes = status.SerializeToString()
        return encoded


def _auth_metadata(method: str, service: str) -> dict[str, str]:
    return {"method": method, "service": service}


def authenticate(
    world: World, request: Request, *, method: str, service: str, scopes: Iterable[str]
) -> Principal:
    """The caller's principal, or the 401/403 Google's front end gives before any service."""
    token = request.bearer_token()
    if token is None:
        raise ApiError(
            401,
            f"Request is missing required authentication credential. {_AUTH_HELP}",
            "CREDENTIALS_MISSING",
            metadata=_auth_metadata(method, service),
            headers=[("www-authenticate", _REALM)],
            legacy=False,
        )
    record = world.tokens.resolve_access_token(token, now=world.clock())
    if record is None:
        raise ApiError(
            401,
            f"Request had invalid authentication credentials. {_AUTH_HELP}",
            "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            metadata=_auth_metadata(method, service),
            headers=[("www-authenticate", f'{_REALM}, error="invalid_token"')],
            legacy=False,
        )
    accepted = set(scopes)
    if accepted.isdisjoint(record.scopes):
        raise ApiError(
            403,
            "Request had insufficient authentication scopes.",
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            metadata=_auth_metadata(method, service),
            headers=[
                (
                    "www-authenticate",
                    f'{_REALM}, error="insufficient_scope", scope="{" ".join(sorted(accepted))}"',
                )
            ],
            legacy=False,
        )
    return record.principal


def check_quota_project(world: World, request: Request) -> str | None:
    """The `x-goog-user-project` the caller bills, which must exist (else 400, as Google says)."""
    quota = request.header("x-goog-user-project")
    if quota is None:
        return None
    try:
        world.project(quota)
    except WorldLookupError:
        raise ApiError(400, "User project specified in the request is invalid.") from None
    return quota


def consumer_invalid(project: str, service: str) -> ApiError:
    """The 403 for a consumer project that does not exist (or the caller cannot see)."""
    return ApiError(
        403,
        f"Permission denied on resource project {project}.",
        "CONSUMER_INVALID",
        metadata={"consumer": f"projects/{project}", "containerInfo": project, "service": service},
    )
