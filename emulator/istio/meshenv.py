"""Filling `istio-system/mesh-env` with what only binding reveals: where istiod listens.

The mesh connector (hgate) keeps the mesh-env ConfigMap of a cluster: it fills keys that are
missing and never overwrites one (seed-spec §3.5). On loopback istiod's port is chosen by the
OS, so a world file cannot name it; once the listeners are bound, `publish_mesh_env` plays the
connector's part for the keys the emulator owns, in every mesh cluster whose world file seeded
a `mesh-env` ConfigMap (no ConfigMap: no connector installed, nothing is created):

* `XDS_ADDR` and `CA_ADDR`: istiod's `host:port`;
* `CAROOT_ISTIOD`: the root istiod's certificate chains to (the world root);
* `ISTIO_META_CLUSTER_ID`: the cluster id istiod expects in a CA call's `ClusterID`.

This runs beside `emulator.kube.kubeconfig.publish`, which points GKE's `endpoint` at the
API server the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from urllib.parse import urlsplit

from emulator.istio.server import mesh_clusters, mesh_key
from emulator.kube.cluster import kube_cluster
from emulator.world import World

NAMESPACE = "istio-system"
NAME = "mesh-env"


def owned_values(world: World, address: str, cluster_id: str) -> dict[str, str]:
    """The keys the emulator fills, for an istiod at `address` (pure)."""
    return {
        "XDS_ADDR": address,
        "CA_ADDR": address,
        "CAROOT_ISTIOD": world.pki.root_pem.decode(),
        "ISTIO_META_CLUSTER_ID": cluster_id,
    }


def publish_mesh_env(world: World, endpoints: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Fill missing owned keys of each mesh cluster's mesh-env; return what each now holds."""
    published: dict[str, dict[str, str]] = {}
    for cluster in mesh_clusters(world):
        url = endpoints.get(f"istiod/{mesh_key(cluster)}")
        parts = urlsplit(url) if url else None
        if parts is None or parts.port is None or not parts.hostname:
            continue
        kube = kube_cluster(world, cluster)
        found = kube.store.find("configmaps", NAMESPACE, NAME)
        if found is None:
            continue
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        updated = copy.deepcopy(found)
        data = updated.setdefault("data", {}) or {}
        updated["data"] = data
        for key, value in owned_values(world, f"{host}:{parts.port}", cluster.name).items():
            if not str(data.get(key) or "").strip():
                data[key] = value
        if data != found.get("data"):
            kube.apply(updated)
        published[mesh_key(cluster)] = dict(data)
    return published
