"""Cloud Resource Manager: `projects.get` in v1 (what krun reads) and v3.

* `GET /v1/projects/{projectId}`: projectNumber (a string), projectId,
  lifecycleState, name (the display name), labels, createTime;
* `GET /v3/projects/{projectIdOrNumber}`: name `projects/NUMBER`, projectId,
  state, displayName, labels, times and an etag.

Both need `resourcemanager.projects.get`. A project that does not exist looks
exactly like one the caller may not see: v1 says "The caller does not have
permission", v3 "Permission ... denied on resource ... (or it may not exist)".
"""

from __future__ import annotations

from typing import Any

from emulator.asgi import ASGIApp, Request, Response, Router, json_api_app
from emulator.errors import WorldLookupError
from emulator.googleapi import ApiError, authenticate, check_quota_project
from emulator.world import Project, World, stable_hex

HOSTNAMES = ("cloudresourcemanager.googleapis.com",)
SERVICE = "cloudresourcemanager.googleapis.com"
PERMISSION = "resourcemanager.projects.get"
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/cloud-platform.read-only",
    "https://www.googleapis.com/auth/cloudplatformprojects",
    "https://www.googleapis.com/auth/cloudplatformprojects.readonly",
)


def project_v1(project: Project) -> dict[str, Any]:
    """The v1 Project resource, in the order Google writes its keys."""
    body: dict[str, Any] = {
        "projectNumber": str(project.number),
        "projectId": project.id,
        "lifecycleState": "ACTIVE",
        "name": project.name or project.id,
    }
    if project.labels:
        body["labels"] = dict(project.labels)
    body["createTime"] = project.create_time
    return body


def project_v3(project: Project) -> dict[str, Any]:
    """The v3 Project resource: the number moves into `name`, the state is `state`."""
    body: dict[str, Any] = {
        "name": f"projects/{project.number}",
        "projectId": project.id,
        "state": "ACTIVE",
        "displayName": project.name or project.id,
        "createTime": project.create_time,
        "updateTime": project.create_time,
        "etag": f'W/"{stable_hex(f"{project.id}/{sorted(project.labels.items())}", 16)}"',
    }
    if project.labels:
        body["labels"] = dict(project.labels)
    return body


def _denied_v1() -> ApiError:
    return ApiError(403, "The caller does not have permission")


def _denied_v3(project: str) -> ApiError:
    return ApiError(
        403,
        f"Permission '{PERMISSION}' denied on resource "
        f"'//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist).",
        "IAM_PERMISSION_DENIED",
        domain=SERVICE,
        metadata={"permission": PERMISSION, "resource": f"projects/{project}"},
        legacy=False,
    )


def create_app(world: World) -> ASGIApp:
    router = Router()

    def lookup(request: Request, project_id: str, method: str, denied: ApiError) -> Project:
        principal = authenticate(world, request, method=method, service=SERVICE, scopes=SCOPES)
        check_quota_project(world, request)
        if not world.allowed(principal, PERMISSION, project_id=project_id):
            raise denied
        try:
            return world.project(project_id)
        except WorldLookupError:
            raise denied from None

    async def get_v1(request: Request, project: str) -> Response:
        try:
            found = lookup(
                request, project, "google.cloudresourcemanager.v1.Projects.GetProject", _denied_v1()
            )
        except ApiError as exc:
            return exc.rest_response()
        return Response.json(project_v1(found))

    async def get_v3(request: Request, project: str) -> Response:
        try:
            found = lookup(
                request,
                project,
                "google.cloud.resourcemanager.v3.Projects.GetProject",
                _denied_v3(project),
            )
        except ApiError as exc:
            return exc.rest_response()
        return Response.json(project_v3(found))

    router.add("GET", r"/v1/projects/(?P<project>[^/:]+)", get_v1)
    router.add("GET", r"/v3/projects/(?P<project>[^/:]+)", get_v3)
    return json_api_app(router, service="cloudresourcemanager")
