"""The config cluster: GKE's container API (REST v1) and the selection rules (pure).

Selection (`select_cluster`), first rule that decides wins:

1. `CLUSTER_NAME` / `CLUSTER_LOCATION` given: only clusters with that name / location
   qualify; none is an error naming what exists (the original fell through to rule 2);
2. a cluster labelled `krun-config-cluster=true` (replaces the original's preference for
   names starting with `istio`, which picked the *last* such cluster);
3. a regional cluster in the instance's region, then a zonal cluster in a zone of that
   region, then anything else;
4. ties keep the API's order.

Unless `MESH` is `gke://...`, only clusters labelled `mesh_id` are listed (the original's
filter). When the config project is not the workload's, calls carry
`x-goog-user-project: CONFIG_PROJECT`, as the original's quota project did.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from krun.errors import DiscoveryError
from krun.http import HttpClient

MESH_LABEL = "mesh_id"
PREFERRED_LABEL = "krun-config-cluster"
GET_ATTEMPTS = 3
GET_RETRY_DELAY = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterInfo:
    """A GKE cluster as krun uses it."""

    project: str
    name: str
    location: str
    endpoint: str = ""
    ca_pem: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def url(self) -> str:
        """The cluster's address: its selfLink, its tokens' issuer, the STS provider name."""
        return cluster_url(self.project, self.location, self.name)


def cluster_url(project: str, location: str, name: str) -> str:
    return (
        f"https://container.googleapis.com/v1/projects/{project}"
        f"/locations/{location}/clusters/{name}"
    )


def cluster_from_json(project: str, document: Any) -> ClusterInfo:
    """A REST `Cluster` to ClusterInfo; the CA is decoded from base64 (empty if it is not)."""
    if isinstance(document, dict):
        auth, labels = document.get("masterAuth") or {}, document.get("resourceLabels") or {}
    if not isinstance(document, dict) or not isinstance(auth, dict) or not isinstance(labels, dict):
        raise DiscoveryError(
            f"GKE answered a cluster of project {project} that is not a Cluster object"
        )
    try:
        ca = base64.b64decode(auth.get("clusterCaCertificate", ""), validate=True).decode()
    except (binascii.Error, ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        ca = ""
    return ClusterInfo(
        project=project,
        name=str(document.get("name", "")),
        location=str(document.get("location") or document.get("zone") or ""),
        endpoint=str(document.get("endpoint", "")),
        ca_pem=ca,
        labels=MappingProxyType({str(k): str(v) for k, v in labels.items()}),
    )


def region_rank(location: str, region: str | None) -> int:
    """0: the region itself; 1: a zone of it; 2: elsewhere (all 0 without a region)."""
    if not region or location == region:
        return 0
    return 1 if location.startswith(region + "-") else 2


def _preferred(cluster: ClusterInfo) -> bool:
    return cluster.labels.get(PREFERRED_LABEL, "").lower() == "true"


def select_cluster(
    clusters: Sequence[ClusterInfo],
    *,
    region: str | None,
    name: str | None = None,
    location: str | None = None,
    project: str = "",
) -> tuple[ClusterInfo, str]:
    """The config cluster and why it won; DiscoveryError if none qualifies."""
    if not clusters:
        raise DiscoveryError(f"no cluster found in project {project}")
    given = (("CLUSTER_NAME", name), ("CLUSTER_LOCATION", location))
    wanted = [f"{variable}={value}" for variable, value in given if value]
    candidates = [c for c in clusters if name in (None, c.name) and location in (None, c.location)]
    if not candidates:
        have = ", ".join(f"{c.location}/{c.name}" for c in clusters)
        raise DiscoveryError(
            f"no cluster {_describe(name, location)} in project {project}; found {have}"
        )
    best = min(
        enumerate(candidates),
        key=lambda item: (not _preferred(item[1]), region_rank(item[1].location, region), item[0]),
    )[1]
    reasons = [f"matches {' and '.join(wanted)}"] if wanted else []
    if _preferred(best):
        reasons.append(f"labelled {PREFERRED_LABEL}=true")
    if region:
        where = ("in region", "in a zone of region", "none in region")
        reasons.append(f"{where[region_rank(best.location, region)]} {region}")
    if len(candidates) > 1:
        reasons.append(f"first of {len(candidates)} by rule")
    return best, "; ".join(reasons) or "the only cluster"


def _describe(name: str | None, location: str | None) -> str:
    return " ".join(
        ([f"named {name!r}"] if name else []) + ([f"in {location!r}"] if location else [])
    )


def quota_project(config_project: str, workload_project: str | None) -> str | None:
    """`x-goog-user-project` for GKE calls: the config project, when it is not the workload's."""
    if workload_project and config_project != workload_project:
        return config_project
    return None


class GkeClient:
    """`clusters.list` and `clusters.get` over REST."""

    def __init__(
        self,
        http: HttpClient,
        base: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.sleep = sleep

    def _headers(self, token: str, quota: str | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}"}
        if quota:
            headers["x-goog-user-project"] = quota
        return headers

    def list_clusters(
        self, project: str, *, token: str, quota: str | None, mesh_only: bool
    ) -> list[ClusterInfo]:
        """Clusters in every location of `project` (only `mesh_id`-labelled when `mesh_only`)."""
        url = f"{self.base}/v1/projects/{project}/locations/-/clusters"
        document = self.http.json(
            "GET", url, headers=self._headers(token, quota), error=DiscoveryError
        )
        found = document.get("clusters") or []
        if not isinstance(found, list):
            raise DiscoveryError(f"{url}: `clusters` is not a list", url=url, status=200)
        clusters = [cluster_from_json(project, c) for c in found]
        if mesh_only:
            clusters = [c for c in clusters if c.labels.get(MESH_LABEL)]
        return clusters

    def get_cluster(
        self, project: str, location: str, name: str, *, token: str, quota: str | None
    ) -> ClusterInfo:
        """One cluster; retried on 5xx and no answer (GKE's front end has transient errors)."""
        url = f"{self.base}/v1/projects/{project}/locations/{location}/clusters/{name}"
        for attempt in range(1, GET_ATTEMPTS + 1):
            try:
                document = self.http.json(
                    "GET", url, headers=self._headers(token, quota), error=DiscoveryError
                )
                return cluster_from_json(project, document)
            except DiscoveryError as error:
                transient = error.status is None or error.status >= 500
                if not transient or attempt == GET_ATTEMPTS:
                    if error.status == 404:
                        raise DiscoveryError(
                            f"cluster {project}/{location}/{name} not found: {error}",
                            url=url,
                            status=404,
                        ) from None
                    raise
                self.sleep(GET_RETRY_DELAY)
        raise AssertionError("unreachable")  # pragma: no cover
