"""Who the workload is to Istio, and when its credentials are renewed (pure).

From discovery's decisions and the mesh-env map:

* **istio-token audience**: the trust domain, or `istio-ca` when `OSS_ISTIO` is set (env,
  then mesh-env; open-source istiod accepts only `istio-ca` by default). A managed control
  plane always gets the trust domain, as the original's MCP path did.
* **ClusterID** sent to the CA: `ISTIO_META_CLUSTER_ID` (env, then mesh-env), else the
  original's `cn-PROJECT-LOCATION-CLUSTER`.
* **CA trust**: mesh-env `CAROOT_ISTIOD`, else ConfigMap `istio-system/istio-ca-root-cert`
  (read by the shell), else `var/run/secrets/istio/root-cert.pem` under the base directory,
  else the system's roots (a public CA). The name checked on istiod's certificate is
  `ISTIOD_SAN` (env, then mesh-env), else `istiod.istio-system.svc` on port 15012 (Istio's
  default), else the address's host.
* **Files' roots** (`root-cert.pem`, `ca_certificates.pem`): every mesh-env `CAROOT*` value
  (the original's trust bundle), else istiod's root, else the chain's last certificate.

Schedules: the istio-token is replaced once 80% of its lifetime has passed (the kubelet's
rule for projected tokens); certificates follow `krun.certs.rotation`, counting the
lifetime from when krun received the certificate (Istio CAs backdate `notBefore`).
"""

from __future__ import annotations

from collections.abc import Mapping

from krun import env
from krun.certs import rotation
from krun.decisions import Decision, Source
from krun.discovery.addresses import ControlPlane
from krun.meshenv import layered

ISTIO_CA_AUDIENCE = "istio-ca"
ISTIOD_SAN = "istiod.istio-system.svc"
ISTIOD_PORT = 15012
TOKEN_PATH = "var/run/secrets/tokens/istio-token"  # noqa: S105 - a path, not a secret
TOKEN_REFRESH_SHARE = 0.8
ISTIOD_ROOT_FILE = "var/run/secrets/istio/root-cert.pem"


def token_audience(
    kind: ControlPlane, oss_istio: Decision[str] | None, trust_domain: str
) -> Decision[str]:
    """The istio-token's audience."""
    if kind is ControlPlane.MANAGED:
        return Decision(trust_domain, Source.DEFAULT, "the trust domain (managed control plane)")
    if oss_istio is not None:
        return Decision(
            ISTIO_CA_AUDIENCE, oss_istio.source, f"{env.OSS_ISTIO} is set: open-source istiod"
        )
    return Decision(
        trust_domain,
        Source.DEFAULT,
        f"the trust domain ({env.OSS_ISTIO} unset: managed-style istiod)",
    )


def oss_istio(env_value: bool, mesh_env: Mapping[str, str] | None) -> Decision[str] | None:
    return layered(env.OSS_ISTIO, "true" if env_value else None, mesh_env)


def cluster_id(
    env_value: str | None,
    mesh_env: Mapping[str, str] | None,
    project: str,
    location: str,
    name: str,
) -> Decision[str]:
    """The `ClusterID` call metadata."""
    found = layered(env.ISTIO_META_CLUSTER_ID, env_value, mesh_env)
    if found is not None:
        return found
    return Decision(
        f"cn-{project}-{location}-{name}", Source.DEFAULT, "cn-PROJECT-LOCATION-CLUSTER"
    )


def ca_server_name(
    address: str, env_value: str | None, mesh_env: Mapping[str, str] | None
) -> Decision[str]:
    """The name istiod's certificate must carry."""
    found = layered(env.ISTIOD_SAN, env_value, mesh_env)
    if found is not None:
        return found
    host, _, port = address.rpartition(":")
    if port == str(ISTIOD_PORT):
        return Decision(ISTIOD_SAN, Source.DEFAULT, "Istio's default on port 15012")
    return Decision(host.strip("[]"), Source.DEFAULT, "the CA address's host")


def istiod_root(
    mesh_env: Mapping[str, str] | None, config_map: str | None, file: str | None
) -> Decision[str | None]:
    """The PEM that verifies istiod; None means the system's roots."""
    found = layered("CAROOT_ISTIOD", None, mesh_env)
    if found is not None:
        return Decision(found.value + "\n", Source.MESH_ENV, "CAROOT_ISTIOD")
    if config_map and config_map.strip():
        return Decision(
            config_map, Source.DEFAULT, "ConfigMap istio-system/istio-ca-root-cert root-cert.pem"
        )
    if file and file.strip():
        return Decision(file, Source.DEFAULT, ISTIOD_ROOT_FILE)
    return Decision(None, Source.DEFAULT, "no istiod root known: the system's roots")


def trust_bundle(mesh_env: Mapping[str, str] | None, root: str | None, chain: list[str]) -> str:
    """The roots written beside the certificate."""
    values = [
        v.strip()
        for k, v in sorted((mesh_env or {}).items())
        if k.startswith(env.CAROOT_PREFIX) and v.strip()
    ]
    if values:
        return "\n".join(values) + "\n"
    if root:
        return root.strip() + "\n"
    return chain[-1].strip() + "\n"


def token_refresh_at(issued_at: float, expires_at: float) -> float:
    """When to replace a Kubernetes token."""
    return issued_at + max(0.0, expires_at - issued_at) * TOKEN_REFRESH_SHARE


def certificate_renew_at(
    received_at: float,
    not_before: float,
    not_after: float,
    *,
    share: float,
    jitter: float = 0.0,
) -> float:
    """When to renew a certificate received at `received_at`."""
    start = min(max(not_before, received_at), not_after)
    return rotation.renew_at(start, not_after, share=share, jitter=jitter)
