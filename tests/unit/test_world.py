"""The world model: lookups, IAM evaluation, naming helpers, change notification."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.errors import WorldLookupError
from emulator.testing import demo_world_text
from emulator.world import Principal, region_code, region_of, stable_number
from emulator.worldfile import parse_world

WORLD = parse_world(demo_world_text())
FORTIO = Principal.for_email("k8s-fortio@mesh-demo.iam.gserviceaccount.com")


def test_project_iam_grants_and_denies() -> None:
    """Roles in the project policy grant their permissions to listed members only."""
    assert WORLD.allowed(FORTIO, "container.clusters.list", project_id="mesh-demo")
    assert not WORLD.allowed(FORTIO, "container.clusters.list", project_id="other-project")
    nobody = Principal.for_email("no-grants@mesh-demo.iam.gserviceaccount.com")
    assert not WORLD.allowed(nobody, "resourcemanager.projects.get", project_id="mesh-demo")
    assert not WORLD.allowed(FORTIO, "container.clusters.list", project_id="no-such-project")


def test_account_policy_and_workload_members() -> None:
    """A service account's own policy admits the legacy workload-identity member form."""
    agent = WORLD.service_account(
        "service-123456789012@gcp-sa-meshdataplane.iam.gserviceaccount.com"
    )
    ksa = Principal.for_workload(123456789012, "mesh-demo.svc.id.goog", "fortio", "default")
    other = Principal.for_workload(123456789012, "mesh-demo.svc.id.goog", "fortio", "other")
    assert WORLD.allowed_on_account(ksa, "iam.serviceAccounts.getAccessToken", agent)
    assert not WORLD.allowed_on_account(other, "iam.serviceAccounts.getAccessToken", agent)
    assert "serviceAccount:mesh-demo.svc.id.goog[fortio/default]" in ksa.members


def test_lookups_name_what_is_missing() -> None:
    """Missing things raise WorldLookupError with the name asked for."""
    with pytest.raises(WorldLookupError, match="'nope'"):
        WORLD.project("nope")
    with pytest.raises(WorldLookupError, match="clusters/gone"):
        WORLD.cluster("mesh-demo", "us-central1-c", "gone")
    with pytest.raises(WorldLookupError, match=r"'x@y\.z'"):
        WORLD.service_account("x@y.z")
    assert ["istio", "plain"] == [c.name for c in WORLD.clusters("mesh-demo", "-")]
    assert ["plain"] == [c.name for c in WORLD.clusters("mesh-demo", "europe-west1")]


def test_service_account_by_unique_id() -> None:
    """IAM accepts a unique id wherever it accepts an email."""
    account = WORLD.service_account("k8s-fortio@mesh-demo.iam.gserviceaccount.com")
    assert 21 == len(account.unique_id)
    assert account is WORLD.service_account(account.unique_id)


@pytest.mark.parametrize(
    ("zone", "region"),
    [
        ("us-central1-a", "us-central1"),
        ("europe-west1", "europe-west1"),
        ("us-central1-1", "us-central1"),
    ],
)
def test_region_of(zone: str, region: str) -> None:
    """Zones lose their one-character suffix; regions pass through."""
    assert region == region_of(zone)


def test_run_url_shape() -> None:
    """Cloud Run URLs are <service>-<hash>-<region code>.a.run.app."""
    service = next(WORLD.run_services())
    assert "uc" == region_code("us-central1")
    assert service.url.startswith("https://fortio-")
    assert service.url.endswith("-uc.a.run.app")


@given(st.text(max_size=20), st.integers(min_value=1, max_value=25))
def test_stable_number_has_exact_digits(seed: str, digits: int) -> None:
    """Derived ids have exactly the digits asked for and do not change between calls."""
    value = stable_number(seed, digits)
    assert digits == len(str(value))
    assert value == stable_number(seed, digits)


def test_changed_wakes_subscribers_in_their_loop() -> None:
    """changed() sets each subscribed event through its own loop."""
    world = parse_world(demo_world_text())

    async def wait_for_change() -> int:
        event = asyncio.Event()
        world.subscribe(asyncio.get_running_loop(), event)
        asyncio.get_running_loop().call_soon(world.set_attribute, "vm-1", "k", "v")
        await asyncio.wait_for(event.wait(), 5)
        return world.generation

    assert 1 == asyncio.run(wait_for_change())
    assert "v" == world.instance("vm-1").attributes["k"]
