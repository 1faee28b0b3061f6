"""Which control plane: XDS and CA addresses from settings and the mesh-env map (pure).

XDS (seed-spec §3.4, with the `:15012`-without-address quirk fixed):

1. an explicit address: `PROXY_CONFIG.discoveryAddress`, `XDS_ADDR` (env), then mesh-env
   `XDS_ADDR`. `-` means proxyless. A `meshconfig.googleapis.com` address without a tenant
   is ignored, as the original did;
2. no tenant (`MESH_TENANT` unset or `-`): the in-cluster istiod behind the mesh
   connector, `IMCON_ADDR:15012` from mesh-env; unknown until mesh-env has `IMCON_ADDR`;
3. a tenant: the managed control plane, `meshconfig.googleapis.com:443`.

CA: `CA_ADDR` (env, then mesh-env); Certificate Authority Service when `CA_POOL` is set;
Mesh CA for the managed control plane; otherwise the XDS address (istiod signs).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from krun import env
from krun.config import Settings, check_address
from krun.decisions import Decision, Source
from krun.errors import ConfigError
from krun.meshenv import layered

MCP_XDS = "meshconfig.googleapis.com:443"
MESH_CA = "meshca.googleapis.com:443"
CAS = "privateca.googleapis.com:443"
ISTIOD_PORT = 15012


class ControlPlane(enum.StrEnum):
    """Kinds of control plane."""

    PROXYLESS = "proxyless"
    EXPLICIT = "explicit"
    ISTIOD = "istiod"
    MANAGED = "managed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Addresses:
    kind: ControlPlane
    xds: Decision[str | None]
    ca: Decision[str | None]


def _no_tenant(tenant: Decision[str] | None) -> bool:
    return tenant is None or tenant.value == "-"


def _address(
    key: str, found: Decision[str] | None, *, allow_dash: bool = False
) -> Decision[str] | None:
    """A mesh-env address is checked as `krun.config` checks the environment's."""
    if found is None or found.source is not Source.MESH_ENV or (allow_dash and found.value == "-"):
        return found
    try:
        check_address(key, found.value)
    except ConfigError:
        raise ConfigError(
            key, f"{found.value!r} in the mesh-env map is not host:port (IPv6 in brackets)"
        ) from None
    return found


def select_xds(
    settings: Settings, mesh_env: Mapping[str, str] | None
) -> tuple[ControlPlane, Decision[str | None]]:
    """The XDS address and the kind of control plane; `mesh_env` None means not loaded yet."""
    tenant = layered(env.MESH_TENANT, settings.mesh_tenant, mesh_env)
    explicit: Decision[str] | None = None
    if settings.proxy_config is not None and settings.proxy_config.discovery_address:
        explicit = Decision(
            settings.proxy_config.discovery_address, Source.ENV, "PROXY_CONFIG.discoveryAddress"
        )
    else:
        explicit = _address(
            env.XDS_ADDR, layered(env.XDS_ADDR, settings.xds_addr, mesh_env), allow_dash=True
        )
    ignored = ""
    if explicit is not None:
        if explicit.value == "-":
            return ControlPlane.PROXYLESS, Decision(
                None, explicit.source, f"{explicit.why}=- : proxyless, no agent"
            )
        if (
            _no_tenant(tenant)
            and "googleapis.com" in explicit.value
            and "meshconfig" in (explicit.value)
        ):
            ignored = f"ignored {explicit.why}={explicit.value} (managed, but no tenant); "
        else:
            return ControlPlane.EXPLICIT, Decision(explicit.value, explicit.source, explicit.why)
    if not _no_tenant(tenant):
        assert tenant is not None
        return ControlPlane.MANAGED, Decision(
            MCP_XDS, tenant.source, f"{ignored}managed control plane for tenant {tenant.value}"
        )
    if mesh_env is None:
        return ControlPlane.UNKNOWN, Decision(
            None,
            Source.DEFAULT,
            f"{ignored}in-cluster istiod at IMCON_ADDR:{ISTIOD_PORT} needs the mesh-env map, "
            "which is not loaded yet",
        )
    connector = mesh_env.get("IMCON_ADDR", "").strip()
    if not connector:
        return ControlPlane.UNKNOWN, Decision(
            None,
            Source.MESH_ENV,
            f"{ignored}mesh-env has no IMCON_ADDR: is the mesh connector (hgate) installed?",
        )
    return ControlPlane.ISTIOD, Decision(
        f"{connector}:{ISTIOD_PORT}",
        Source.MESH_ENV,
        f"{ignored}in-cluster istiod through the mesh connector IMCON_ADDR",
    )


def select_addresses(settings: Settings, mesh_env: Mapping[str, str] | None) -> Addresses:
    """XDS and CA addresses."""
    kind, xds = select_xds(settings, mesh_env)
    explicit_ca = _address(env.CA_ADDR, layered(env.CA_ADDR, settings.ca_addr, mesh_env))
    pool = layered(env.CA_POOL, settings.ca_pool, mesh_env)
    ca: Decision[str | None]
    if explicit_ca is not None:
        ca = Decision(explicit_ca.value, explicit_ca.source, explicit_ca.why)
    elif pool is not None:
        ca = Decision(CAS, pool.source, f"Certificate Authority Service pool {pool.value}")
    elif kind is ControlPlane.MANAGED:
        ca = Decision(MESH_CA, xds.source, "Mesh CA, with the managed control plane")
    elif xds.value is not None:
        ca = Decision(xds.value, xds.source, "the XDS server (istiod signs certificates)")
    else:
        ca = Decision(None, xds.source, f"follows the XDS address: {xds.why}")
    return Addresses(kind=kind, xds=xds, ca=ca)
