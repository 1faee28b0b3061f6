"""Cloud Resource Manager v1 `projects.get`: a project's number and labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from krun.errors import DiscoveryError
from krun.http import HttpClient


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectInfo:
    project_id: str
    number: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def get_project(http: HttpClient, base: str, project: str, *, token: str) -> ProjectInfo:
    """`GET /v1/projects/{project}`; a denied or missing project is a DiscoveryError (403)."""
    url = f"{base.rstrip('/')}/v1/projects/{project}"
    document = http.json(
        "GET", url, headers={"Authorization": f"Bearer {token}"}, error=DiscoveryError
    )
    labels = document.get("labels") or {}
    if not isinstance(labels, dict):
        raise DiscoveryError(f"{url}: `labels` is not an object", url=url, status=200)
    return ProjectInfo(
        project_id=str(document.get("projectId", project)),
        number=str(document.get("projectNumber", "")),
        labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
    )
