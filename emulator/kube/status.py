"""Kubernetes `Status` bodies and the error that carries one.

Every failure the API server sends is a `Status` object shaped exactly like
kube-apiserver's (`kind: Status`, `apiVersion: v1`, `metadata: {}`, `status:
Failure`, `message`, `reason`, `details`, `code`), because clients switch on
`reason` and print `message` verbatim: kubectl's `Error from server (NotFound):
configmaps "x" not found` is that message. Details name the *resource* (plural)
in `kind` for NotFound, AlreadyExists, Conflict and Forbidden, and the *Kind*
for Invalid, as the real server does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.errors import EmulatorError


@dataclass(frozen=True, slots=True)
class Cause:
    """One field-level problem of an Invalid status."""

    field: str
    reason: str
    """FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueForbidden..."""
    message: str

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def required(field: str, detail: str = "") -> Cause:
    """A missing field, worded as the real validator words it."""
    return Cause(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    """A field with a bad value; `value` is shown the way Go's %q/%v shows it."""
    shown = f'"{value}"' if isinstance(value, str) else _go_value(value)
    return Cause(field, "FieldValueInvalid", f"Invalid value: {shown}: {detail}")


def forbidden_field(field: str, detail: str) -> Cause:
    return Cause(field, "FieldValueForbidden", f"Forbidden: {detail}")


def not_supported(field: str, value: Any, supported: list[str]) -> Cause:
    listed = ", ".join(f'"{s}"' for s in supported)
    return Cause(
        field, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {listed}'
    )


def _go_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


class StatusError(EmulatorError):
    """A request failed; `.body` is the Status object sent to the client."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or []

    @property
    def body(self) -> dict[str, Any]:
        """The Status object, keys in the real server's order."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if name:
        found["name"] = name
    if group:
        found["group"] = group
    if kind:
        found["kind"] = kind
    return found


def qualified(resource: str, group: str) -> str:
    """`configmaps`, or `roles.rbac.authorization.k8s.io`: a GroupResource as Go prints it."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        _details(name, group, resource),
    )


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        _details(name, group, resource),
    )


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
"""The Conflict reason for an update carrying an old resourceVersion."""


def forbidden(resource: str, group: str, name: str, why: str) -> StatusError:
    """403; with an empty `resource` (a non-resource URL) the message is `forbidden: ...`."""
    if not resource:
        message = f"forbidden: {why}"
    elif name:
        message = f'{qualified(resource, group)} "{name}" is forbidden: {why}'
    else:
        message = f"{qualified(resource, group)} is forbidden: {why}"
    return StatusError(403, "Forbidden", message, _details(name, group, resource))


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> StatusError:
    """422 naming each bad field: `Kind "name" is invalid: field: problem`."""
    listed = str(causes[0]) if len(causes) == 1 else "[" + ", ".join(map(str, causes)) + "]"
    details = _details(name, group, kind)
    details["causes"] = [c.to_json() for c in causes]
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {listed}', details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def gone(message: str) -> StatusError:
    """410 Expired: a resourceVersion older than the retained history."""
    return StatusError(410, "Expired", message)


def method_not_allowed(message: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(message: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", message, {})


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message, {})


def no_such_path() -> StatusError:
    """What kube-apiserver says for a resource or group it does not serve."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def internal(message: str) -> StatusError:
    return StatusError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def success(name: str, group: str, resource: str, uid: str) -> dict[str, Any]:
    """What DELETE returns for kinds that do not send back the deleted object."""
    details = _details(name, group, resource)
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
