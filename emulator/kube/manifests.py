"""Installing manifest files into an emulated cluster, in-process and as administrator.

`install_istio_crds(kube)` applies `manifests/crds/istio.yaml` (minimal CRDs of
the Istio kinds the scenarios use) and creates `istio-system`, which is what an
Istio installation leaves behind before anything of ours is applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator.kube.cluster import KubeCluster

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
ISTIO_CRDS = MANIFESTS / "crds" / "istio.yaml"


def install_istio_crds(
    kube: KubeCluster, *, namespace: str = "istio-system"
) -> list[dict[str, Any]]:
    """Apply the Istio CRDs and create the control plane's namespace (if missing)."""
    if not ISTIO_CRDS.exists():
        raise FileNotFoundError(f"{ISTIO_CRDS} is missing: run from a checkout of the repository")
    applied = kube.apply_file(ISTIO_CRDS)
    if kube.store.find("namespaces", "", namespace) is None:
        applied.append(
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        )
    return applied
