"""The emulated metadata server against google-auth and plain HTTP, as real clients use it."""

from __future__ import annotations

import concurrent.futures
import time
from typing import TYPE_CHECKING, Any

import google.auth
import google.auth.compute_engine
import google.auth.transport.requests
import google.oauth2.id_token
import jwt
import pytest
import requests

if TYPE_CHECKING:
    from emulator.testing import PointGoogleAuth, RunningEmulator

pytestmark = pytest.mark.integration

# google-auth is only partly typed; Any keeps mypy from flagging each untyped call.
compute_engine: Any = google.auth.compute_engine
id_token: Any = google.oauth2.id_token

FLAVOUR = {"Metadata-Flavor": "Google"}
V1 = "/computeMetadata/v1"
AUDIENCE = "https://fortio-demo.a.run.app"
VM_SA = "vm-default@mesh-demo.iam.gserviceaccount.com"
RUN_SA = "k8s-fortio@mesh-demo.iam.gserviceaccount.com"


def _base(emu: RunningEmulator, instance: str | None = None) -> str:
    return emu.url("metadata" if instance is None else f"metadata/{instance}")


def _get(
    emu: RunningEmulator,
    path: str,
    instance: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> requests.Response:
    kwargs.setdefault("timeout", 20)
    return requests.get(
        _base(emu, instance) + path, headers=FLAVOUR if headers is None else headers, **kwargs
    )


def _auth_request(emu: RunningEmulator) -> google.auth.transport.requests.Request:
    session = requests.Session()
    session.verify = str(emu.ca_file)
    return google.auth.transport.requests.Request(session)


# google-auth.


@pytest.mark.parametrize(("instance", "email"), [("vm-1", VM_SA), (None, RUN_SA)])
def test_compute_engine_credentials_get_a_token_of_the_instance_account(
    emu: RunningEmulator, point_google_auth: PointGoogleAuth, instance: str | None, email: str
) -> None:
    """google-auth's metadata credentials refresh to a token every fake resolves to the account."""
    point_google_auth(emu, instance)
    credentials = compute_engine.Credentials()
    credentials.refresh(_auth_request(emu))
    record = emu.world.tokens.resolve_access_token(credentials.token, now=emu.world.clock())
    assert record is not None
    assert record.principal.email == email
    assert credentials.service_account_email == email
    assert credentials.universe_domain == "googleapis.com"


def test_default_credentials_find_the_world_project(
    emu: RunningEmulator, point_google_auth: PointGoogleAuth
) -> None:
    """ADC pings `/`, decides it is on Google Cloud and reads the project id."""
    point_google_auth(emu, None)
    credentials, project = google.auth.default()
    assert project == "mesh-demo"
    assert isinstance(credentials, compute_engine.Credentials)


@pytest.mark.parametrize("certs", ["/oauth2/v1/certs", "/oauth2/v3/certs"])
def test_fetched_id_token_verifies_against_the_world_keys(
    emu: RunningEmulator, point_google_auth: PointGoogleAuth, certs: str
) -> None:
    """fetch_id_token's token verifies with the PEM and the JWKS forms of the world's keys."""
    point_google_auth(emu, "vm-1")
    request = _auth_request(emu)
    token = id_token.fetch_id_token(request, AUDIENCE)
    claims = id_token.verify_token(
        token, request, audience=AUDIENCE, certs_url=emu.url("oauth2") + certs
    )
    assert claims["aud"] == AUDIENCE
    assert claims["email"] == VM_SA
    assert claims["sub"] == emu.world.service_account(VM_SA).unique_id
    assert claims["google"]["compute_engine"]["instance_name"] == "vm-1"


# Headers and refusals.


@pytest.mark.parametrize(
    ("instance", "server"),
    [
        ("fortio-0", "Metadata Server for Serverless"),
        ("vm-1", "Metadata Server for VM"),
        ("gke-node-1", "GKE Metadata Server"),
    ],
)
def test_each_flavour_names_its_server(emu: RunningEmulator, instance: str, server: str) -> None:
    """The Server header tells the three flavours apart, on values and on errors alike."""
    ok = _get(emu, f"{V1}/project/project-id", instance)
    missing = _get(emu, f"{V1}/instance/nothing-here", instance)
    assert ok.status_code == 200
    assert ok.text == "mesh-demo"
    assert ok.headers["Content-Type"] == "application/text"
    for response in (ok, missing):
        assert response.headers["Server"] == server
        assert response.headers["Metadata-Flavor"] == "Google"
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "text/html; charset=UTF-8"


def test_root_answers_without_the_flavor_header(emu: RunningEmulator) -> None:
    """`/` answers 200 with Metadata-Flavor even to a probe without the header (Go's OnGCE)."""
    response = _get(emu, "/", headers={})
    assert response.status_code == 200
    assert response.headers["Metadata-Flavor"] == "Google"


def test_missing_flavor_header_is_403_html(emu: RunningEmulator) -> None:
    """Without Metadata-Flavor: Google a value is refused with an HTML page saying why."""
    response = _get(emu, f"{V1}/project/project-id", headers={})
    assert response.status_code == 403
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert "Metadata-Flavor:Google" in response.text
    assert response.headers["Metadata-Flavor"] == "Google"


def test_wrong_flavor_value_is_403(emu: RunningEmulator) -> None:
    """The header must say exactly Google."""
    assert _get(emu, f"{V1}/", headers={"Metadata-Flavor": "Amazon"}).status_code == 403


def test_forwarded_requests_are_refused(emu: RunningEmulator) -> None:
    """Any X-Forwarded-For means a proxy relayed the request: 403, even with the flavor header."""
    response = _get(
        emu, f"{V1}/project/project-id", headers={**FLAVOUR, "X-Forwarded-For": "1.2.3.4"}
    )
    assert response.status_code == 403
    assert "mesh-demo" not in response.text


def test_only_get_and_head_exist(emu: RunningEmulator) -> None:
    """POST is 405; HEAD gives GET's headers without a body."""
    url = _base(emu, "vm-1") + f"{V1}/instance/id"
    posted = requests.post(url, headers=FLAVOUR, timeout=20)
    head = requests.head(url, headers=FLAVOUR, timeout=20)
    got = requests.get(url, headers=FLAVOUR, timeout=20)
    assert posted.status_code == 405
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(got.content))
    assert head.headers["ETag"] == got.headers["ETag"]


# Paths and encodings.


def test_directory_without_slash_is_redirected(emu: RunningEmulator) -> None:
    """`instance` answers 301 to `instance/`; following it gives the listing."""
    moved = _get(emu, f"{V1}/instance", "vm-1", allow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["Location"].endswith(f"{V1}/instance/")
    followed = _get(emu, f"{V1}/instance", "vm-1")
    assert followed.status_code == 200
    assert "attributes/" in followed.text.splitlines()


def test_recursive_service_account_is_what_google_auth_reads(emu: RunningEmulator) -> None:
    """The account directory with recursive=true is JSON with aliases, email and scopes only."""
    response = _get(
        emu, f"{V1}/instance/service-accounts/default/", "vm-1", params={"recursive": "true"}
    )
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "aliases": ["default"],
        "email": VM_SA,
        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
    }


def test_service_account_listing_names_default_and_email(emu: RunningEmulator) -> None:
    """`service-accounts/` lists `default/` and the account's email."""
    listing = _get(emu, f"{V1}/instance/service-accounts/", "vm-1").text.splitlines()
    assert sorted(listing) == sorted(["default/", f"{VM_SA}/"])
    by_email = _get(emu, f"{V1}/instance/service-accounts/{VM_SA}/email", "vm-1")
    assert by_email.text == VM_SA


def test_recursive_instance_json_uses_camel_case(emu: RunningEmulator) -> None:
    """Recursive JSON spells names in camelCase, numbers as numbers, and carries no tokens."""
    body = _get(emu, f"{V1}/", "vm-1", params={"recursive": "true"}).json()
    assert body["project"]["numericProjectId"] == 123456789012
    assert body["project"]["projectId"] == "mesh-demo"
    assert body["instance"]["attributes"] == {"role": "demo-vm"}
    assert body["instance"]["networkInterfaces"][0]["ip"]
    assert "token" not in body["instance"]["serviceAccounts"]["default"]


def test_flavour_specific_paths(emu: RunningEmulator) -> None:
    """Cloud Run has a region and no attributes; GKE has its cluster attributes; VM zones are names."""
    region = _get(emu, f"{V1}/instance/region", "fortio-0")
    assert region.text == "projects/123456789012/regions/us-central1"
    assert _get(emu, f"{V1}/instance/zone", "fortio-0").text.startswith(
        "projects/123456789012/zones/"
    )
    assert _get(emu, f"{V1}/instance/attributes/", "fortio-0").status_code == 404
    assert _get(emu, f"{V1}/instance/attributes/cluster-name", "gke-node-1").text == "istio"
    assert _get(emu, f"{V1}/instance/attributes/cluster-location", "gke-node-1").text == (
        "us-central1-c"
    )
    assert (
        _get(emu, f"{V1}/instance/zone", "vm-1").text == "projects/123456789012/zones/us-central1-a"
    )
    assert _get(emu, f"{V1}/instance/network-interfaces/0/ipv6s", "vm-1").status_code == 404
    assert _get(emu, f"{V1}/universe/universe-domain", "gke-node-1").text == "googleapis.com"


def test_leaf_alt_json(emu: RunningEmulator) -> None:
    """alt=json encodes a value as JSON, with the JSON content type."""
    response = _get(emu, f"{V1}/project/numeric-project-id", "vm-1", params={"alt": "json"})
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == 123456789012


def test_bad_query_value_is_400_naming_it(emu: RunningEmulator) -> None:
    """wait_for_change=maybe is refused and the page names the parameter."""
    response = _get(emu, f"{V1}/instance/id", "vm-1", params={"wait_for_change": "maybe"})
    assert response.status_code == 400
    assert "wait_for_change" in response.text


# Tokens.


def test_token_with_scopes(emu: RunningEmulator) -> None:
    """`?scopes=a,b` issues a Bearer token for exactly those scopes."""
    scopes = "https://www.googleapis.com/auth/userinfo.email,https://www.googleapis.com/auth/pubsub"
    response = _get(
        emu, f"{V1}/instance/service-accounts/default/token", "vm-1", params={"scopes": scopes}
    )
    body = response.json()
    assert response.headers["Content-Type"] == "application/json"
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= emu.world.token_lifetime
    record = emu.world.tokens.resolve_access_token(body["access_token"], now=emu.world.clock())
    assert record is not None
    assert record.scopes == tuple(scopes.split(","))


def test_identity_full_format_carries_instance_claims(emu: RunningEmulator) -> None:
    """format=full on a VM adds google.compute_engine; licenses=TRUE adds license_id."""
    response = _get(
        emu,
        f"{V1}/instance/service-accounts/default/identity",
        "vm-1",
        params={"audience": AUDIENCE, "format": "full", "licenses": "TRUE"},
    )
    claims = jwt.decode(response.text, options={"verify_signature": False})
    engine = claims["google"]["compute_engine"]
    vm = emu.world.instance("vm-1")
    assert engine["project_id"] == "mesh-demo"
    assert engine["project_number"] == 123456789012
    assert engine["zone"] == "us-central1-a"
    assert engine["instance_id"] == vm.id
    assert engine["instance_name"] == "vm-1"
    assert isinstance(engine["instance_creation_timestamp"], int)
    assert engine["license_id"] == []


def test_identity_standard_format_has_no_instance_claims(emu: RunningEmulator) -> None:
    """Without format=full the token names the account only."""
    response = _get(
        emu,
        f"{V1}/instance/service-accounts/{VM_SA}/identity",
        "vm-1",
        params={"audience": AUDIENCE},
    )
    claims = jwt.decode(response.text, options={"verify_signature": False})
    assert "google" not in claims
    assert claims["email"] == VM_SA


@pytest.mark.parametrize("params", [{}, {"audience": ""}])
def test_identity_without_audience_is_400(emu: RunningEmulator, params: dict[str, str]) -> None:
    """A missing or empty audience is refused with a message saying so."""
    response = _get(emu, f"{V1}/instance/service-accounts/default/identity", "vm-1", params=params)
    assert response.status_code == 400
    assert "audience" in response.text


def test_instance_without_account_has_no_service_accounts(fresh_emu: RunningEmulator) -> None:
    """Without a service account everything under service-accounts is 404."""
    fresh_emu.world.instance("vm-1").service_account = None
    for path in ("service-accounts/", "service-accounts/default/token"):
        assert _get(fresh_emu, f"{V1}/instance/{path}", "vm-1").status_code == 404


def test_world_without_instances_answers_only_the_root(fresh_emu: RunningEmulator) -> None:
    """With nobody to answer for, `/` still answers the probe and everything else is 404."""
    fresh_emu.world.instances.clear()
    assert _get(fresh_emu, "/").status_code == 200
    assert _get(fresh_emu, f"{V1}/project/project-id").status_code == 404


def test_caller_is_chosen_by_source_address(fresh_emu: RunningEmulator) -> None:
    """On the shared listener, the instance whose address is the client IP answers."""
    fresh_emu.world.instance("vm-1").address = "127.0.0.1"
    response = _get(fresh_emu, f"{V1}/instance/name")
    assert response.text == "vm-1"
    assert response.headers["Server"] == "Metadata Server for VM"


# ETags and wait_for_change.


def test_every_value_has_an_etag_of_its_body(emu: RunningEmulator) -> None:
    """Same body, same ETag; different body, different ETag."""
    first = _get(emu, f"{V1}/instance/id", "vm-1")
    again = _get(emu, f"{V1}/instance/id", "vm-1")
    other = _get(emu, f"{V1}/instance/name", "vm-1")
    assert first.headers["ETag"] == again.headers["ETag"]
    assert first.headers["ETag"] != other.headers["ETag"]


def test_stale_last_etag_returns_at_once(emu: RunningEmulator) -> None:
    """When last_etag differs from the current one the current value comes back immediately."""
    response = _get(
        emu,
        f"{V1}/instance/attributes/role",
        "vm-1",
        params={"wait_for_change": "true", "last_etag": "0000", "timeout_sec": "600"},
        timeout=20,
    )
    assert response.text == "demo-vm"


def test_wait_times_out_with_the_current_value(emu: RunningEmulator) -> None:
    """With nothing changing, timeout_sec ends the wait with the unchanged value and ETag."""
    current = _get(emu, f"{V1}/instance/attributes/role", "vm-1")
    params = {"wait_for_change": "true", "last_etag": current.headers["ETag"], "timeout_sec": "1"}
    response = _get(emu, f"{V1}/instance/attributes/role", "vm-1", params=params)
    assert response.status_code == 200
    assert response.text == "demo-vm"
    assert response.headers["ETag"] == current.headers["ETag"]
    assert emu.world.waiting == 0  # the timed-out wait left no subscription behind


def _wait_for_waiter(emu: RunningEmulator) -> None:
    deadline = time.monotonic() + 10
    while not emu.world.waiting:
        if time.monotonic() > deadline:
            pytest.fail("the wait_for_change request never subscribed to world changes")
        time.sleep(0.01)


def test_wait_for_change_wakes_on_an_admin_attribute_change(fresh_emu: RunningEmulator) -> None:
    """A waiting request returns the new value as soon as the admin API changes the attribute."""
    path = f"{V1}/instance/attributes/role"
    current = _get(fresh_emu, path, "vm-1")
    params = {"wait_for_change": "true", "last_etag": current.headers["ETag"], "timeout_sec": "300"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_get, fresh_emu, path, "vm-1", params=params, timeout=30)
        _wait_for_waiter(fresh_emu)
        put = requests.put(
            fresh_emu.url("admin") + "/instances/vm-1/attributes/role", data="changed", timeout=20
        )
        assert put.status_code == 200
        response = waiting.result(timeout=30)
    assert response.text == "changed"
    assert response.headers["ETag"] != current.headers["ETag"]


def test_wait_for_change_on_a_directory_wakes_on_a_new_key(fresh_emu: RunningEmulator) -> None:
    """Watching `attributes/` recursively sees a key added by world.set_attribute from another thread."""
    path = f"{V1}/instance/attributes/"
    params = {"recursive": "true", "wait_for_change": "true", "timeout_sec": "300"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(_get, fresh_emu, path, "gke-node-1", params=params, timeout=30)
        _wait_for_waiter(fresh_emu)
        fresh_emu.world.set_attribute("gke-node-1", "kube-env", "A: b")
        response = waiting.result(timeout=30)
    assert response.json()["kube-env"] == "A: b"
    assert response.json()["cluster-name"] == "istio"


def test_unreadable_query_still_carries_the_metadata_headers(emu: RunningEmulator) -> None:
    """Even a request refused before routing (a query that is not UTF-8) gets the server's headers."""
    response = requests.get(
        emu.url("metadata/fortio-0") + "/computeMetadata/v1/project/project-id?alt=%ff",
        headers={"Metadata-Flavor": "Google"},
        timeout=10,
    )
    assert 400 == response.status_code
    assert "Google" == response.headers["Metadata-Flavor"]
    assert "Metadata Server for Serverless" == response.headers["Server"]
    assert "invalid query string" in response.text
