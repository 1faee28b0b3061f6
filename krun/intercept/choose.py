"""Which interception mode, as a pure function of settings and probe results.

First rule that decides wins (seed-spec §2.1, with the probe done before, not after):

1. no XDS server (`XDS_ADDR=-`): `proxyless`, no agent and no Envoy;
2. `ISTIO_META_INTERCEPTION_MODE=NONE` (env, then mesh-env): `whitebox`;
3. a gateway (`GATEWAY_NAME`): `whitebox` (a gateway captures nothing);
4. not root: `whitebox` (the original's rule);
5. no `CAP_NET_ADMIN` in the effective set: `whitebox`, iptables unavailable;
6. `iptables-restore --test` of a probe chain failed: `whitebox`, iptables unavailable
   (Cloud Run gen1's gVisor: `Failed to initialize nft: Protocol not supported`);
7. otherwise iptables: `REDIRECT`, or `TPROXY` when asked for.

The original tried iptables and fell back to whitebox on failure, after the fact; probing
first lets `krun explain` say what will happen and why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from krun import env
from krun.config import InterceptionMode
from krun.decisions import Decision, Source
from krun.errors import ConfigError


class Interception(enum.StrEnum):
    """What krun sets up."""

    PROXYLESS = "proxyless"
    WHITEBOX = "whitebox"
    REDIRECT = "iptables-redirect"
    TPROXY = "iptables-tproxy"


@dataclass(frozen=True, slots=True, kw_only=True)
class Probes:
    """What the machine allows, as probed; `iptables` None means not probed."""

    root: bool
    cap_net_admin: bool
    iptables: bool | None = None
    iptables_error: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "root": self.root,
            "cap_net_admin": self.cap_net_admin,
            "iptables": self.iptables,
            "iptables_error": self.iptables_error or None,
        }


def choose(
    probes: Probes,
    *,
    proxyless: bool,
    mode: Decision[str] | None,
    gateway: str | None,
) -> Decision[Interception]:
    """The interception mode and why; `mode` is ISTIO_META_INTERCEPTION_MODE as layered.

    A `mode` that is not NONE, REDIRECT or TPROXY (a mesh-env value: the environment's is
    checked by `krun.config`) is a ConfigError, not a silent REDIRECT.
    """
    name = env.ISTIO_META_INTERCEPTION_MODE
    if mode is not None and mode.value.upper() not in set(InterceptionMode):
        raise ConfigError(
            name, f"{mode.value!r} (from {mode.source}) is not NONE, REDIRECT or TPROXY"
        )
    if proxyless:
        return Decision(Interception.PROXYLESS, Source.ENV, "XDS_ADDR=- : proxyless, no agent")
    if mode is not None and mode.value.upper() == InterceptionMode.NONE:
        return Decision(Interception.WHITEBOX, mode.source, f"{name}=NONE")
    if gateway:
        return Decision(Interception.WHITEBOX, Source.ENV, f"a gateway ({env.GATEWAY_NAME})")
    if not probes.root:
        return Decision(Interception.WHITEBOX, Source.PROBE, "not root: iptables is unavailable")
    if not probes.cap_net_admin:
        return Decision(
            Interception.WHITEBOX,
            Source.PROBE,
            "iptables is unavailable: root without CAP_NET_ADMIN",
        )
    if not probes.iptables:
        detail = f": {probes.iptables_error}" if probes.iptables_error else ""
        return Decision(
            Interception.WHITEBOX,
            Source.PROBE,
            f"iptables is unavailable: iptables-restore --test failed{detail}",
        )
    wanted = (mode.value.upper() if mode is not None else "") or InterceptionMode.REDIRECT
    chosen = Interception.TPROXY if wanted == InterceptionMode.TPROXY else Interception.REDIRECT
    source = mode.source if mode is not None else Source.PROBE
    asked = f"; {name}={wanted}" if mode is not None else ""
    return Decision(
        chosen, source, f"iptables works: root with CAP_NET_ADMIN, probe chain accepted{asked}"
    )
