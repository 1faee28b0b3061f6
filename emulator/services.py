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
* `admin`: the emulator's admin API (loopback only, plain HTTP).

Every Google API listener is TLS with a certificate from the world CA.
"""

from __future__ import annotations

from emulator import admin, crm, gke, iam, metadata, oauth2, sts
from emulator.serve import ServiceSpec
from emulator.world import World

GOOGLE_APIS = {
    "container": gke,
    "cloudresourcemanager": crm,
    "sts": sts,
    "iamcredentials": iam,
    "oauth2": oauth2,
}


def build_services(
    world: World,
    *,
    host: str = "127.0.0.1",
    endpoints: dict[str, str] | None = None,
    per_instance_metadata: bool = True,
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
    specs.append(ServiceSpec("admin", admin.create_app(world, lambda: shown), tls=False))
    return specs
