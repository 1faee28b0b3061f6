"""The `MESH` locator: where the mesh's configuration lives (pure).

Forms (docs/krun.md has the table):

* `gke://PROJECT[/LOCATION/CLUSTER[/NAMESPACE]]`: a config project, optionally one cluster
  and the namespace to join; without a cluster every cluster of the project is a candidate;
* `//container.googleapis.com/projects/P[/locations/L[/clusters/C]]` and the selfLink
  `https://container.googleapis.com/v1/projects/P/locations/L/clusters/C` (`zones/` is
  accepted for `locations/`); partial forms select among the project's mesh clusters;
* `file://PATH` and `https://URL`: a mesh-env document (see `krun.meshenv`);
* `td:[projects=N][&scopes=S]`: Traffic Director.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from krun import env
from krun.errors import ConfigError

_PROJECT = r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]\Z"
_LOCATION = r"[a-z]+(?:-[a-z]+)*[0-9]+(?:-[a-z])?\Z"
_CLUSTER = r"[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?\Z"
_NAMESPACE = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z"
_GKE_HOST = "container.googleapis.com"

FORMS = (
    "gke://PROJECT[/LOCATION/CLUSTER[/NAMESPACE]], "
    "//container.googleapis.com/projects/P[/locations/L[/clusters/C]], "
    "https://container.googleapis.com/v1/projects/P/locations/L/clusters/C, "
    "file://PATH, https://URL or td:[projects=N][&scopes=S]"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterMesh:
    """The mesh is a GKE project, optionally one cluster in it."""

    project: str
    location: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    mesh_clusters_only: bool = True
    """List only clusters labelled `mesh_id` (False for `gke://`, as the original)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshEnvFile:
    """The mesh-env map is a local file."""

    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshEnvUrl:
    """The mesh-env map is served at an HTTPS URL."""

    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficDirector:
    """Traffic Director mode: no cluster, no Kubernetes."""

    project_number: str | None = None
    scope: str = "default"


MeshLocator = ClusterMesh | MeshEnvFile | MeshEnvUrl | TrafficDirector


def _bad(value: str, why: str) -> ConfigError:
    return ConfigError(env.MESH, f"{why} in {value!r}; expected {FORMS}")


def _check(pattern: str, text: str, what: str, value: str) -> str:
    if not re.match(pattern, text):
        raise _bad(value, f"{what} {text!r} is not valid")
    return text


def parse_mesh(value: str) -> MeshLocator:
    """Parse a `MESH` value; raise ConfigError naming `MESH` and the expected forms."""
    text = value.strip()
    if text.startswith("gke://"):
        return _parse_gke(text)
    if text.startswith((f"//{_GKE_HOST}/", f"https://{_GKE_HOST}/")):
        return _parse_resource(text)
    if text.startswith("file://"):
        path = unquote(text.removeprefix("file://"))
        if not path:
            raise _bad(value, "empty file path")
        return MeshEnvFile(path=path)
    if text.startswith("https://"):
        if len(text) <= len("https://") or text[len("https://")] == "/":
            raise _bad(value, "no host")
        return MeshEnvUrl(url=text)
    if text.startswith("td:"):
        return _parse_td(text)
    if text.startswith("http://"):
        raise _bad(value, "a mesh-env URL must use https")
    raise _bad(value, "unknown form")


def _parse_gke(text: str) -> ClusterMesh:
    parts = list(text.removeprefix("gke://").split("/"))
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or not parts[0]:
        raise _bad(text, "no project")
    if len(parts) not in (1, 3, 4) or "" in parts:
        raise _bad(text, "gke:// takes a project, then optionally LOCATION/CLUSTER[/NAMESPACE]")
    project = _check(_PROJECT, parts[0], "project", text)
    location = _check(_LOCATION, parts[1], "location", text) if len(parts) >= 3 else None
    cluster = _check(_CLUSTER, parts[2], "cluster", text) if len(parts) >= 3 else None
    namespace = _check(_NAMESPACE, parts[3], "namespace", text) if len(parts) == 4 else None
    return ClusterMesh(
        project=project,
        location=location,
        cluster=cluster,
        namespace=namespace,
        mesh_clusters_only=False,
    )


def _parse_resource(text: str) -> ClusterMesh:
    path = text.split(_GKE_HOST, 1)[1].strip("/")
    segments = path.split("/") if path else []
    if segments[:1] == ["v1"]:
        segments = segments[1:]
    if len(segments) % 2:
        raise _bad(text, "the path must be pairs of collection/name")
    found: dict[str, str] = {}
    order = ("projects", "locations", "clusters")
    for index in range(0, len(segments), 2):
        key, name = segments[index], segments[index + 1]
        key = "locations" if key == "zones" else key
        if index // 2 >= len(order) or key != order[index // 2] or not name:
            raise _bad(text, "the path must be projects/P[/locations/L[/clusters/C]]")
        found[key] = name
    if "projects" not in found:
        raise _bad(text, "no project")
    return ClusterMesh(
        project=_check(_PROJECT, found["projects"], "project", text),
        location=_check(_LOCATION, found["locations"], "location", text)
        if "locations" in found
        else None,
        cluster=_check(_CLUSTER, found["clusters"], "cluster", text)
        if "clusters" in found
        else None,
    )


def _parse_td(text: str) -> TrafficDirector:
    query = text.removeprefix("td:")
    number: str | None = None
    scope: str | None = None
    for item in query.split("&") if query else []:
        key, sep, val = item.partition("=")
        if not sep or not val:
            raise _bad(text, f"td: parameter {item!r} needs a value")
        if key == "projects" and number is None:
            if not val.isdigit():
                raise _bad(text, f"projects={val!r} is not a project number")
            number = val
        elif key == "scopes" and scope is None:
            scope = val
        else:
            raise _bad(text, f"td: parameter {key!r} is unknown or repeated")
    return TrafficDirector(project_number=number, scope=scope or "default")
