"""Kubeconfig files for the emulated clusters, and where the emulator publishes them.

`publish(world, endpoints, state_dir)` runs once the listeners are bound: it
points each cluster's GKE `endpoint`/`endpoint_port` at its API server's
address (so GKE discovery leads there) and writes an admin kubeconfig per
cluster into `state_dir/kube/`, returning endpoint-map key -> file path.
`google_kubeconfig` writes one that authenticates as a Google account with a
fixed access token, as `gcloud container clusters get-credentials` would
arrange through its plugin.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from emulator.kube.cluster import kube_cluster
from emulator.world import Cluster, Principal, World


def service_key(cluster: Cluster) -> str:
    """The endpoint-map key of a cluster's API server: `kube/PROJECT/LOCATION/NAME`."""
    return f"kube/{cluster.project_id}/{cluster.location}/{cluster.name}"


def server_url(cluster: Cluster) -> str:
    host = f"[{cluster.endpoint}]" if ":" in cluster.endpoint else cluster.endpoint
    return f"https://{host}:{cluster.endpoint_port}"


def render(*, name: str, server: str, ca_pem: str, user: str, token: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user (a bearer token) and one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }


def write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def admin_kubeconfig(world: World, cluster: Cluster, path: Path) -> Path:
    """Write a kubeconfig for the cluster's administrator (`system:masters`)."""
    kube = kube_cluster(world, cluster)
    config = render(
        name=kube.name,
        server=server_url(cluster),
        ca_pem=cluster.ca_pem,
        user=f"{kube.name}-admin",
        token=kube.admin_token,
    )
    return write(path, config)


def google_kubeconfig(
    world: World, cluster: Cluster, email: str, path: Path, *, lifetime: int = 24 * 3600
) -> Path:
    """Write a kubeconfig that calls the cluster as Google account `email` (a fixed token)."""
    token = world.tokens.issue_access_token(
        Principal.for_email(email),
        ("https://www.googleapis.com/auth/cloud-platform",),
        now=world.clock(),
        lifetime=lifetime,
    )
    kube = kube_cluster(world, cluster)
    config = render(
        name=kube.name,
        server=server_url(cluster),
        ca_pem=cluster.ca_pem,
        user=email,
        token=token.token,
    )
    return write(path, config)


def publish(world: World, endpoints: Mapping[str, str], state_dir: Path) -> dict[str, str]:
    """Point each served cluster's GKE endpoint at its API server; write admin kubeconfigs."""
    written: dict[str, str] = {}
    for cluster in world.all_clusters():
        url = endpoints.get(service_key(cluster))
        if url is None:
            continue
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            continue
        cluster.endpoint, cluster.endpoint_port = parts.hostname, parts.port
        stem = f"{cluster.project_id}_{cluster.location}_{cluster.name}"
        path = admin_kubeconfig(world, cluster, state_dir / "kube" / f"{stem}.kubeconfig")
        written[service_key(cluster)] = str(path)
    return written
