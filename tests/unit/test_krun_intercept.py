"""The interception decision as a table of probe results and settings (pure)."""

from __future__ import annotations

import pytest

from krun.decisions import Decision, Source
from krun.errors import ConfigError
from krun.intercept.choose import Interception, Probes, choose
from krun.intercept.probe import CAP_NET_ADMIN, effective_caps

CAPABLE = Probes(root=True, cap_net_admin=True, iptables=True)
GEN1 = Probes(
    root=True,
    cap_net_admin=False,
    iptables=False,
    iptables_error="Failed to initialize nft: Protocol not supported",
)
NO_NETFILTER = Probes(
    root=True, cap_net_admin=True, iptables=False, iptables_error="Protocol not supported"
)
USER = Probes(root=False, cap_net_admin=False)


def env(value: str) -> Decision[str]:
    return Decision(value, Source.ENV, "ISTIO_META_INTERCEPTION_MODE")


CASES = {
    "proxyless wins over everything": (
        CAPABLE,
        True,
        env("TPROXY"),
        "gw",
        "proxyless",
        "XDS_ADDR=-",
    ),
    "NONE asked": (CAPABLE, False, env("NONE"), None, "whitebox", "=NONE"),
    "NONE from mesh-env": (
        CAPABLE,
        False,
        Decision("none", Source.MESH_ENV, "x"),
        None,
        "whitebox",
        "=NONE",
    ),
    "gateway": (CAPABLE, False, None, "ingress", "whitebox", "gateway"),
    "not root": (USER, False, None, None, "whitebox", "not root"),
    "gen1: no CAP_NET_ADMIN": (GEN1, False, None, None, "whitebox", "without CAP_NET_ADMIN"),
    "probe failed": (NO_NETFILTER, False, None, None, "whitebox", "Protocol not supported"),
    "gen2": (CAPABLE, False, None, None, "iptables-redirect", "iptables works"),
    "REDIRECT asked": (CAPABLE, False, env("redirect"), None, "iptables-redirect", "REDIRECT"),
    "TPROXY asked": (CAPABLE, False, env("TPROXY"), None, "iptables-tproxy", "TPROXY"),
    "TPROXY asked but unavailable": (GEN1, False, env("TPROXY"), None, "whitebox", "unavailable"),
}


@pytest.mark.parametrize("case", CASES)
def test_decision_table(case: str) -> None:
    """Each combination of probes and settings gives its mode, with the reason."""
    probes, proxyless, mode, gateway, expected, why = CASES[case]

    decided = choose(probes, proxyless=proxyless, mode=mode, gateway=gateway)

    assert Interception(expected) == decided.value
    assert why in decided.why


def test_sources_name_what_decided() -> None:
    """A probe decides as `probe`; an explicit setting keeps its source."""
    assert Source.PROBE == choose(GEN1, proxyless=False, mode=None, gateway=None).source
    assert Source.ENV == choose(CAPABLE, proxyless=False, mode=env("NONE"), gateway=None).source


@pytest.mark.parametrize(
    ("status", "capable"),
    [
        ("Name:\tx\nCapEff:\t000001ffffffffff\n", True),
        ("CapEff:\t00000000a80425fb\n", False),  # Docker's default set, as in gVisor
        ("Name:\tx\n", False),
    ],
)
def test_effective_caps(status: str, capable: bool) -> None:
    """CAP_NET_ADMIN is bit 12 of CapEff in /proc/self/status."""
    assert capable == bool(effective_caps(status) >> CAP_NET_ADMIN & 1)


def test_unknown_mode_from_mesh_env_is_a_config_error() -> None:
    """A mesh-env mode that is not NONE, REDIRECT or TPROXY is refused, not taken as REDIRECT."""
    with pytest.raises(ConfigError, match=r"ISTIO_META_INTERCEPTION_MODE: 'SIDECAR' .*mesh-env"):
        choose(
            CAPABLE,
            proxyless=False,
            mode=Decision("SIDECAR", Source.MESH_ENV, "ISTIO_META_INTERCEPTION_MODE"),
            gateway=None,
        )
