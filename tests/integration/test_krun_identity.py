"""krun's Google tokens against the emulated metadata server, STS and IAM Credentials."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest

from emulator import kube_tokens
from emulator.testing import RunningEmulator
from krun.config import Settings
from krun.discovery.discover import discover
from krun.discovery.metadata import MetadataClient
from krun.errors import IdentityError
from krun.http import HttpClient
from krun.identity.google import MetadataTokens, StsTokens
from scenarios.krun_env import loopback_env

pytestmark = pytest.mark.integration

SERVICE_AGENT = "service-123456789012@gcp-sa-meshdataplane.iam.gserviceaccount.com"
RUN_AUDIENCE = "https://fortio-abc-uc.a.run.app"


def sts_for(
    emu: RunningEmulator, kube_token: object, *, clock: object = None, **overrides: str
) -> StsTokens:
    """STS tokens configured from krun's own discovery of fortio-0."""
    settings = Settings.from_env(loopback_env(emu, "fortio-0"))
    http = HttpClient(ca_file=settings.ca_file)
    found = discover(settings, http)
    args: dict[str, Any] = {
        "sts_endpoint": emu.url("sts"),
        "iam_endpoint": emu.url("iamcredentials"),
        "kube_token": kube_token,
        "trust_domain": found.value("trust_domain"),
        "cluster_url": found.value("cluster_url"),
        "project_number": found.value("project_number"),
        "clock": clock or emu.clock,
    } | overrides
    return StsTokens(http, **args)


def minted(
    emu: RunningEmulator,
    calls: list[str],
    *,
    lifetime: int = 3600,
    audience: str = "mesh-demo.svc.id.goog",
) -> Callable[[], str]:
    """A TokenRequest stand-in for fortio/default in cluster istio, counting its calls."""
    cluster = emu.world.cluster("mesh-demo", "us-central1-c", "istio")

    def token() -> str:
        calls.append("k8s")
        return kube_tokens.mint(
            cluster, "fortio", "default", [audience], now=emu.clock(), lifetime=lifetime
        )

    return token


def test_sts_iam_id_token_is_verified_by_the_world(emu: RunningEmulator) -> None:
    """Kubernetes JWT -> STS -> generateIdToken gives the service agent's ID token, cached per audience."""
    calls: list[str] = []
    tokens = sts_for(emu, minted(emu, calls))

    first = tokens.id_token(RUN_AUDIENCE)
    again = tokens.id_token(RUN_AUDIENCE)
    other = tokens.id_token("https://other.example")

    claims = jwt.decode(
        first, emu.world.tokens.public_key, algorithms=["RS256"], audience=RUN_AUDIENCE
    )
    assert SERVICE_AGENT == claims["email"]
    assert "https://accounts.google.com" == claims["iss"]
    assert first == again
    assert first != other
    assert ["k8s"] == calls, "one federated token serves every audience"


def test_sts_iam_access_token_is_the_service_agents(emu: RunningEmulator) -> None:
    """generateAccessToken gives a token the world resolves to the service agent."""
    tokens = sts_for(emu, minted(emu, []))

    record = emu.world.tokens.resolve_access_token(tokens.access_token(), now=emu.clock())

    assert record is not None
    assert SERVICE_AGENT == record.principal.subject.removeprefix("serviceAccount:")
    federated = emu.world.tokens.resolve_access_token(tokens.federated_token(), now=emu.clock())
    assert federated is not None
    assert "subject/ns/fortio/sa/default" in federated.principal.subject


def test_impersonation_override(emu: RunningEmulator) -> None:
    """KRUN_IMPERSONATE replaces the service agent; the world refuses an account without a grant."""
    tokens = sts_for(
        emu, minted(emu, []), impersonate="impersonated@mesh-demo.iam.gserviceaccount.com"
    )

    with pytest.raises(IdentityError) as caught:
        tokens.id_token(RUN_AUDIENCE)

    assert 403 == caught.value.status
    assert "generateIdToken" in caught.value.url


def test_sts_rejection_is_an_identity_error(emu: RunningEmulator) -> None:
    """A Kubernetes token with the wrong audience is refused by STS, reported with URL and status."""
    tokens = sts_for(emu, minted(emu, [], audience="wrong-audience"))

    with pytest.raises(IdentityError) as caught:
        tokens.access_token()

    assert 400 == caught.value.status
    assert caught.value.url.endswith("/v1/token")
    assert "invalid_grant" in str(caught.value) or "invalid_target" in str(caught.value)


def test_federated_token_is_refreshed_before_expiry(fresh_emu: RunningEmulator) -> None:
    """A short-lived token is replaced before it expires: world time moves, a new exchange happens."""
    calls: list[str] = []
    tokens = sts_for(fresh_emu, minted(fresh_emu, calls, lifetime=100))

    first = tokens.federated_token()
    fresh_emu.clock.advance(40)
    same = tokens.federated_token()
    fresh_emu.clock.advance(20)
    renewed = tokens.federated_token()

    assert first == same
    assert renewed != first
    assert ["k8s", "k8s"] == calls
    assert fresh_emu.world.tokens.resolve_access_token(renewed, now=fresh_emu.clock()) is not None


def test_metadata_tokens(emu: RunningEmulator) -> None:
    """On Cloud Run the instance's own access and ID tokens come from the metadata server."""
    host = Settings.from_env(emu.metadata_env("fortio-0")).endpoints.metadata_host
    tokens = MetadataTokens(MetadataClient(HttpClient(), host), clock=emu.clock)

    access = tokens.access_token()
    identity = tokens.id_token(RUN_AUDIENCE)

    assert access == tokens.access_token()
    assert emu.world.tokens.resolve_access_token(access, now=emu.clock()) is not None
    claims = jwt.decode(
        identity, emu.world.tokens.public_key, algorithms=["RS256"], audience=RUN_AUDIENCE
    )
    assert "k8s-fortio@mesh-demo.iam.gserviceaccount.com" == claims["email"]


def test_sts_needs_a_project_number_or_an_account() -> None:
    """Without either, the service agent cannot be named: a clear IdentityError."""
    with pytest.raises(IdentityError, match="PROJECT_NUMBER"):
        StsTokens(
            HttpClient(),
            sts_endpoint="https://sts.invalid",
            iam_endpoint="https://iam.invalid",
            kube_token=lambda: "",
            trust_domain="td",
            cluster_url="https://c",
        )
