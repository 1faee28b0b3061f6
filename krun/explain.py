"""`krun explain`: run discovery and identity checks without changing anything, and say why.

The report is one JSON document: every decision with its value, its source (`env`,
`metadata`, `gke`, `crm`, `mesh-env`, `kubeconfig`, `probe`, `default`) and a reason; the
mesh-env map's state; the interception mode krun would choose, with the probes behind it;
the files krun would write; and a certificate actually issued by the CA for this workload
(its SAN and expiry; nothing is written: the token and the key stay in memory). On failure
the report still holds what was decided before the failing step, and `error` says what
went wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from krun import __version__, env
from krun.certs.files import KEY_MODE, plan
from krun.config import Settings
from krun.decisions import Decision
from krun.discovery.addresses import ControlPlane
from krun.discovery.discover import Discovery, discover
from krun.errors import ConfigError, KrunError
from krun.http import HttpClient
from krun.identity import plan as rules
from krun.intercept.choose import Probes, choose
from krun.meshenv import layered

ProbeFunction = Callable[..., Probes]
"""`probe(iptables=bool) -> Probes`, as `krun.intercept.probe.probe`."""


class _Report:
    """What the identity and interception steps add to discovery's decisions."""

    def __init__(self) -> None:
        self.probes: Probes | None = None
        self.certificate: dict[str, Any] | None = None
        self.certificate_why = "not requested: discovery did not finish"


def explain(
    environ: Mapping[str, str], *, probe: ProbeFunction | None = None
) -> tuple[dict[str, Any], KrunError | None]:
    """The report, and the error that stopped it (None when every step passed).

    `probe(iptables=bool) -> Probes` replaces the machine probes (tests).
    """
    d = Discovery()
    extra = _Report()
    settings: Settings | None = None
    failure: KrunError | None = None
    try:
        settings = Settings.from_env(environ)
        discover(settings, HttpClient(ca_file=settings.ca_file), into=d)
        _interception(settings, d, extra, probe)
        _identity(settings, d, extra)
    except KrunError as error:
        failure = error
    return report(d, settings, failure, extra), failure


def _interception(
    settings: Settings, d: Discovery, extra: _Report, probe: ProbeFunction | None
) -> None:
    d.step = "interception"
    start = time.perf_counter()
    if probe is None:
        from krun.intercept.probe import probe as machine  # noqa: PLC0415

        probe = machine
    mode = layered(
        env.ISTIO_META_INTERCEPTION_MODE,
        str(settings.interception_mode) if settings.interception_mode else None,
        d.mesh_env,
    )
    proxyless = d.addresses is not None and d.addresses.kind is ControlPlane.PROXYLESS
    extra.probes = probe(iptables=not proxyless)
    chosen = choose(extra.probes, proxyless=proxyless, mode=mode, gateway=settings.gateway)
    d.decide("interception", Decision(str(chosen.value), chosen.source, chosen.why))
    d.timings["interception"] = round((time.perf_counter() - start) * 1000, 2)


def _identity(settings: Settings, d: Discovery, extra: _Report) -> None:
    from krun.identity.manager import Identity  # noqa: PLC0415 - cryptography, h2

    d.step = "identity"
    extra.certificate_why = "not requested: the identity step failed"
    start = time.perf_counter()
    try:
        identity = Identity.from_discovery(settings, d)
        for key, decision in identity.decisions().items():
            d.decide(key, decision)
        if identity.ca is None:
            extra.certificate_why = f"not requested: {identity.ca_why}"
        token = identity.fetch_token()
        d.decide(
            "istio_token",
            Decision(
                "(obtained, not written)",
                identity.audience.source,
                f"TokenRequest for {identity.namespace}/{identity.service_account}, "
                f"audience {identity.audience.value}",
            ),
        )
        if identity.ca is not None:
            certificate = identity.issue(token.value)
            extra.certificate = certificate.as_json()
            extra.certificate_why = f"issued by {identity.ca.address} for this report (not written)"
    finally:
        d.timings["identity"] = round((time.perf_counter() - start) * 1000, 2)


def report(
    d: Discovery,
    settings: Settings | None,
    failure: KrunError | None,
    extra: _Report | None = None,
) -> dict[str, Any]:
    """The JSON-ready report (pure)."""
    extra = extra or _Report()
    document: dict[str, Any] = {
        "krun": __version__,
        "ok": failure is None,
        "failed_step": None if failure is None else d.step,
        "error": None if failure is None else str(failure),
        "decisions": {key: decision.as_json() for key, decision in d.decisions.items()},
        "mesh_env": {
            "loaded": d.mesh_env is not None,
            "why": d.mesh_env_why,
            "keys": sorted(d.mesh_env) if d.mesh_env is not None else [],
        },
        "interception": {
            "mode": d.value("interception"),
            "why": d.decisions["interception"].why if "interception" in d.decisions else None,
            "probes": extra.probes.as_json() if extra.probes is not None else None,
        },
        "notes": list(d.notes),
        "timings_ms": dict(d.timings),
    }
    if isinstance(failure, ConfigError):
        document["error_variable"] = failure.variable
    if settings is not None:
        issued = extra.certificate or {}
        document["certificate"] = {
            "san": issued.get("san") or d.value("spiffe_id"),
            "key_type": str(settings.key_type),
            "renew_at_share": settings.renew_at,
            "ttl_requested_s": settings.cert_ttl,
            "expiry": issued.get("expiry"),
            "issued": issued or None,
            "why": extra.certificate_why,
        }
        files = [
            {
                "path": str(planned.path),
                "holds": str(planned.content),
                "mode": f"{planned.mode:04o}",
                "owner": None if planned.owner is None else "{}:{}".format(*planned.owner),
            }
            for planned in plan(
                settings.base_dir, proxy_uid=settings.proxy_uid, proxy_gid=settings.proxy_gid
            )
        ]
        files.append(
            {
                "path": str(Path(settings.base_dir) / rules.TOKEN_PATH),
                "holds": "istio-token",
                "mode": f"{KEY_MODE:04o}",
                "owner": f"{settings.proxy_uid}:{settings.proxy_gid}",
            }
        )
        document["files"] = files
    return document


def sentence(d_step: str | None, failure: KrunError) -> str:
    """The one line a person reads first."""
    if isinstance(failure, ConfigError):
        return f"krun explain: the setting {failure.variable} is invalid: {failure}"
    return f"krun explain: step {d_step!r} failed: {failure}"
