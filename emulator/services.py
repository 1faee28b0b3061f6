"""The catalogue: which services an emulator serves for a world, and under what names.

Endpoint-map keys (also the service names that faults select), with the
hostnames each answers to inside a world of namespaces:

* `metadata`: the metadata server, caller chosen by source address
  (metadata.google.internal, 169.254.169.254; plain HTTP);
* `metadata/<instance>`: the metadata server as one instance sees it (loopback only);
* `container`: GKE API v1, REST and gRPC (container.googleapis.com);
* `cloudresourcemanager`: Resource Manager (cloudresourcemanager.googleapis.com);
* `sts`: Security Token Service v1 (sts.googleapis.com);
* `iamcredentials`: IAM Credentials v1 (iamcredentials.googleapis.com);
* `oauth2`: ID-token certificates and OIDC discovery (www.googleapis.com,
  oauth2.googleapis.com, accounts.google.com);
* `run`: the Cloud Run front end (every `*.a.run.app` host of the world), served
  only when the caller passes the `RunInstances` it forwards to;
* `istiod/PROJECT/CLUSTER`: istiod of a mesh cluster (one with a `mesh_id` label): Istio CA,
  ADS and SDS over gRPC with TLS (istiod.istio-system.svc:15012);
* `istiod-debug/PROJECT/CLUSTER`: its debug API (`/debug/syncz`, `/debug/config_dump`; plain HTTP);
* `kube/<project>/<location>/<cluster>`: the Kubernetes API server of each GKE
  cluster (its GKE `endpoint`; also kubernetes.default.svc inside the cluster);
* `admin`: the emulator's admin API (loopback only, plain HTTP).

`bind` maps endpoint-map keys to the (host, port) a service listens on instead of
`host` and port 0: inside a world of namespaces every Google host has its own
address, so each service keeps the real port (443, metadata 80).

Every Google API listener is TLS with a certificate from the world CA.
"""

from __future__ import annotations

from collections.abc import Mapping

from emulator import admin, cloudrun, crm, gke, iam, metadata, oauth2, sts
from emulator.istio import server as istio_server
from emulator.kube import apiserver as kube_apiserver
from emulator.kube.kubeconfig import service_key as kube_service_key
from emulator.serve import ServiceSpec
from emulator.world import World

GOOGLE_APIS = {
    "container": gke,
    "cloudresourcemanager": crm,
    "sts": sts,
    "iamcredentials": iam,
    "oauth2": oauth2,
}

KUBE_HOSTNAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def build_services(
    world: World,
    *,
    host: str = "127.0.0.1",
    endpoints: dict[str, str] | None = None,
    per_instance_metadata: bool = True,
    bind: Mapping[str, tuple[str, int]] | None = None,
    run_instances: cloudrun.RunInstances | None = None,
) -> list[ServiceSpec]:
    """Every service for `world`, each on its own port of `host` (port 0: chosen by the OS).

    `endpoints` is the dict the admin API reports; pass the one the emulator fills.
    """
    shown = endpoints if endpoints is not None else {}
    specs = [
        ServiceSpec(
            "metadata",
            metadata.create_app(world, caller=None),
            tls=False,
            hostnames=metadata.HOSTNAMES,
            host=host,
        )
    ]
    if per_instance_metadata:
        specs += [
            ServiceSpec(
                f"metadata/{name}",
                metadata.create_app(world, caller=name),
                tls=False,
                host=host,
                fault_service="metadata",
            )
            for name in world.instances
        ]
    specs += [
        ServiceSpec(key, module.create_app(world), tls=True, hostnames=module.HOSTNAMES, host=host)
        for key, module in GOOGLE_APIS.items()
    ]
    if run_instances is not None:
        specs.append(
            ServiceSpec(
                "run",
                cloudrun.create_app(world, run_instances),
                tls=True,
                hostnames=cloudrun.hostnames(world),
                host=host,
            )
        )
    specs += istio_server.service_specs(world, host=host)
    specs += [
        ServiceSpec(
            kube_service_key(cluster),
            kube_apiserver.create_app(world, cluster),
            tls=True,
            hostnames=(*KUBE_HOSTNAMES, cluster.endpoint),
            host=host,
        )
        for cluster in world.all_clusters()
    ]
    specs.append(ServiceSpec("admin", admin.create_app(world, lambda: shown), tls=False))
    for spec in specs:
        if bind is not None and spec.name in bind:
            spec.host, spec.port = bind[spec.name]
    return specs
