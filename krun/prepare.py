"""Start-up before anything is intercepted: discovery, then identity, each timed and logged.

`prepare(settings)` runs discovery (`krun.discovery.discover`), then obtains and writes the
istio-token and the certificate (`krun.identity.manager`) and starts their renewal; every
start logs `{"event": "phase", "phase": "discovery"|"identity", "ms": ...}` and one
`{"event": "prepared", "timings_ms": {...}}` line. The Google side of the workload's
identity (`google`: STS with a TokenRequest subject, then IAM Credentials) is built here
but fetches nothing until asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from krun.config import Settings
from krun.discovery.discover import Discovery, discover
from krun.errors import IdentityError
from krun.http import HttpClient
from krun.identity.google import StsTokens
from krun.identity.manager import Identity
from krun.log import LOGGER, phase


@dataclass
class Prepared:
    discovery: Discovery
    identity: Identity
    google: StsTokens | None
    """Google tokens as the workload's KSA (None when the project number is unknown)."""
    timings: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        self.identity.stop()


def sts_tokens(settings: Settings, http: HttpClient, d: Discovery, identity: Identity) -> StsTokens:
    """STS and IAM Credentials for the KSA; the subject token comes from TokenRequest."""
    trust_domain = identity.trust_domain
    return StsTokens(
        http,
        sts_endpoint=settings.endpoints.sts,
        iam_endpoint=settings.endpoints.iamcredentials,
        kube_token=lambda: identity.kube_token(trust_domain),
        trust_domain=trust_domain,
        cluster_url=str(d.value("cluster_url")),
        project_number=d.value("project_number"),
        impersonate=settings.impersonate,
        clock=identity.clock,
    )


def prepare(
    settings: Settings,
    *,
    http: HttpClient | None = None,
    clock: Callable[[], float] = time.time,
    background: bool = True,
) -> Prepared:
    """Discover, then get and write identity; renewal runs in the background unless told not to."""
    client = http or HttpClient(ca_file=settings.ca_file)
    timings: dict[str, float] = {}
    with phase("discovery", timings):
        d = discover(settings, client)
    with phase("identity", timings):
        identity = Identity.from_discovery(settings, d, clock=clock)
        identity.start(background=background)
    try:
        google: StsTokens | None = sts_tokens(settings, client, d, identity)
    except IdentityError as error:
        d.notes.append(f"no Google tokens for the KSA: {error}")
        google = None
    LOGGER.info("prepared", extra={"fields": {"timings_ms": timings, "steps_ms": d.timings}})
    return Prepared(discovery=d, identity=identity, google=google, timings=timings)
