"""XDS and CA address selection from settings and the mesh-env map."""

from __future__ import annotations

import pytest

from krun.config import Settings
from krun.decisions import Source
from krun.discovery.addresses import ControlPlane, select_addresses
from krun.errors import ConfigError

CONNECTOR = {"IMCON_ADDR": "10.1.2.3"}

CASES = {
    "in-cluster istiod via the connector": (
        {},
        CONNECTOR,
        ControlPlane.ISTIOD,
        "10.1.2.3:15012",
        Source.MESH_ENV,
        "10.1.2.3:15012",
    ),
    "tenant dash forces istiod": (
        {"MESH_TENANT": "-"},
        CONNECTOR | {"MESH_TENANT": "tenant-1"},
        ControlPlane.ISTIOD,
        "10.1.2.3:15012",
        Source.MESH_ENV,
        "10.1.2.3:15012",
    ),
    "managed control plane from mesh-env tenant": (
        {},
        CONNECTOR | {"MESH_TENANT": "tenant-1"},
        ControlPlane.MANAGED,
        "meshconfig.googleapis.com:443",
        Source.MESH_ENV,
        "meshca.googleapis.com:443",
    ),
    "env XDS_ADDR beats mesh-env": (
        {"XDS_ADDR": "xds.example:15012"},
        CONNECTOR | {"XDS_ADDR": "other:15012"},
        ControlPlane.EXPLICIT,
        "xds.example:15012",
        Source.ENV,
        "xds.example:15012",
    ),
    "mesh-env XDS_ADDR": (
        {},
        CONNECTOR | {"XDS_ADDR": "other:15012"},
        ControlPlane.EXPLICIT,
        "other:15012",
        Source.MESH_ENV,
        "other:15012",
    ),
    "PROXY_CONFIG beats XDS_ADDR": (
        {"XDS_ADDR": "a:1", "PROXY_CONFIG": '{"discoveryAddress": "b:2"}'},
        None,
        ControlPlane.EXPLICIT,
        "b:2",
        Source.ENV,
        "b:2",
    ),
    "meshconfig without tenant is ignored": (
        {"XDS_ADDR": "meshconfig.googleapis.com:443"},
        CONNECTOR,
        ControlPlane.ISTIOD,
        "10.1.2.3:15012",
        Source.MESH_ENV,
        "10.1.2.3:15012",
    ),
    "meshconfig with tenant is kept": (
        {"XDS_ADDR": "meshconfig.googleapis.com:443", "MESH_TENANT": "t"},
        None,
        ControlPlane.EXPLICIT,
        "meshconfig.googleapis.com:443",
        Source.ENV,
        "meshconfig.googleapis.com:443",
    ),
    "dash is proxyless": (
        {"XDS_ADDR": "-"},
        CONNECTOR,
        ControlPlane.PROXYLESS,
        None,
        Source.ENV,
        None,
    ),
    "explicit CA_ADDR": (
        {"CA_ADDR": "ca.example:443"},
        CONNECTOR,
        ControlPlane.ISTIOD,
        "10.1.2.3:15012",
        Source.MESH_ENV,
        "ca.example:443",
    ),
    "CA pool means CAS": (
        {},
        CONNECTOR | {"CA_POOL": "projects/p/locations/l/caPools/x"},
        ControlPlane.ISTIOD,
        "10.1.2.3:15012",
        Source.MESH_ENV,
        "privateca.googleapis.com:443",
    ),
    "no mesh-env yet": ({}, None, ControlPlane.UNKNOWN, None, Source.DEFAULT, None),
    "mesh-env without a connector": ({}, {}, ControlPlane.UNKNOWN, None, Source.MESH_ENV, None),
}


@pytest.mark.parametrize("case", CASES)
def test_address_selection(case: str) -> None:
    """Each input gives this control plane, XDS address (and source) and CA address."""
    environ, mesh_env, kind, xds, xds_source, ca = CASES[case]

    chosen = select_addresses(Settings.from_env(environ), mesh_env)

    assert (kind, xds, xds_source, ca) == (
        chosen.kind,
        chosen.xds.value,
        chosen.xds.source,
        chosen.ca.value,
    )
    assert chosen.xds.why


def test_unknown_istiod_says_why() -> None:
    """Without IMCON_ADDR the address is unknown, with the reason, never a bare ':15012'."""
    before = select_addresses(Settings.from_env({}), None)
    without = select_addresses(Settings.from_env({}), {})

    assert "not loaded yet" in before.xds.why
    assert "no IMCON_ADDR" in without.xds.why
    assert "follows the XDS address" in before.ca.why


@pytest.mark.parametrize(
    ("mesh_env", "variable"),
    [
        ({"XDS_ADDR": "istiod.example"}, "XDS_ADDR"),
        (CONNECTOR | {"CA_ADDR": "ca:port"}, "CA_ADDR"),
        (CONNECTOR | {"CA_ADDR": "-"}, "CA_ADDR"),
    ],
)
def test_bad_mesh_env_address_is_a_config_error(mesh_env: dict[str, str], variable: str) -> None:
    """A mesh-env address that is not host:port names its key, as a bad env value would."""
    with pytest.raises(ConfigError, match=f"{variable}: .* in the mesh-env map is not host:port"):
        select_addresses(Settings.from_env({}), mesh_env)


def test_mesh_env_xds_dash_means_proxyless() -> None:
    """`XDS_ADDR=-` in mesh-env is proxyless, as in the environment."""
    assert ControlPlane.PROXYLESS == select_addresses(Settings.from_env({}), {"XDS_ADDR": "-"}).kind
