"""The metadata server's pure core: request parsing, the path tree and its encodings."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator import metadata
from emulator.asgi import parse_query
from emulator.metadata import (
    MAX_WAIT_S,
    Alt,
    CallerView,
    Directory,
    Dynamic,
    MetadataRequest,
    MetadataRequestError,
    Redirect,
    Rendered,
    TokenFormat,
    build_tree,
    camel_case,
    parse_request,
    render,
    resolve,
    to_json,
)
from emulator.testing import demo_world_text
from emulator.world import Flavour, Instance, Project, ServiceAccount
from emulator.worldfile import parse_world

V1 = ("computeMetadata", "v1")


def _view(flavour: Flavour, *, account: bool = True) -> CallerView:
    sa = ServiceAccount("sa@p-demo.iam.gserviceaccount.com", "p-demo", "111222333")
    project = Project("p-demo", 123456789012, attributes={"enable-oslogin": "false"})
    instance = Instance(
        name="box",
        flavour=flavour,
        project_id="p-demo",
        zone="us-central1-a",
        id="1234567890123456789" if flavour is not Flavour.SERVERLESS else "00ab",
        service_account=sa.email if account else None,
        attributes={"cluster-name": "istio", "Mixed_Key": "v"},
        hostname="box.internal",
    )
    return CallerView(instance, project, sa if account else None)


def _get(view: CallerView, path: str, **query: str) -> Rendered | Redirect:
    request = parse_request(path, list(query.items()))
    return render(resolve(build_tree(view), request.segments), request)


def _text(view: CallerView, path: str, **query: str) -> str:
    rendered = _get(view, path, **query)
    assert isinstance(rendered, Rendered)
    return rendered.body.decode()


# Parsing.


def test_root_parses_to_no_segments_with_slash() -> None:
    """`/` is the directory at the top of the tree."""
    assert MetadataRequest(segments=(), slash=True) == parse_request("/", [])


def test_trailing_slash_marks_a_directory_request() -> None:
    """The slash is recorded separately from the segments."""
    request = parse_request("/computeMetadata/v1/instance/", [])
    assert (*V1, "instance") == request.segments
    assert request.slash


def test_query_parameters_are_decoded() -> None:
    """Every honoured parameter lands in its typed field."""
    request = parse_request(
        "/computeMetadata/v1/instance/service-accounts/default/identity",
        [
            ("audience", "https://x"),
            ("format", "FULL"),
            ("licenses", "TRUE"),
            ("wait_for_change", "true"),
            ("last_etag", "abc"),
            ("timeout_sec", "5"),
            ("alt", "json"),
            ("recursive", "True"),
            ("scopes", "a, b,,"),
        ],
    )
    assert request.audience == "https://x"
    assert TokenFormat.FULL is request.token_format
    assert request.licenses
    assert request.wait_for_change
    assert request.last_etag == "abc"
    assert request.timeout_sec == 5
    assert Alt.JSON is request.alt
    assert request.recursive
    assert request.scopes == ("a", "b")


def test_unknown_parameters_are_ignored() -> None:
    """The real server ignores parameters it does not know."""
    assert parse_request("/x", [("bindCertificateFingerprint", "z")]) == parse_request("/x", [])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("wait_for_change", "maybe"),
        ("recursive", "yes"),
        ("licenses", "1"),
        ("timeout_sec", "-1"),
        ("timeout_sec", "1.5"),
        ("timeout_sec", "soon"),
        ("timeout_sec", "١٢"),
        ("alt", "xml"),
        ("format", "compact"),
    ],
)
def test_bad_query_values_are_400_naming_the_parameter(name: str, value: str) -> None:
    """A value outside the parameter's domain is refused, naming the parameter."""
    with pytest.raises(MetadataRequestError) as caught:
        parse_request("/computeMetadata/v1/", [(name, value)])
    assert caught.value.status == 400
    assert name in caught.value.message


def test_timeout_is_capped() -> None:
    """A huge timeout_sec is accepted but capped."""
    assert parse_request("/", [("timeout_sec", "999999")]).timeout_sec == MAX_WAIT_S
    assert parse_request("/", [("timeout_sec", "9" * 5000)]).timeout_sec == MAX_WAIT_S


@pytest.mark.parametrize("path", ["", "computeMetadata/v1/", "/a//b", "/a/./b", "/a/../b"])
def test_malformed_paths_are_404(path: str) -> None:
    """Empty, relative and dot segments never reach the tree."""
    with pytest.raises(MetadataRequestError) as caught:
        parse_request(path, [])
    assert caught.value.status == 404


@given(st.text(max_size=60), st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12))))
def test_arbitrary_input_parses_or_raises_only_our_error(
    path: str, query: list[tuple[str, str]]
) -> None:
    """Garbage either parses or raises MetadataRequestError with a 4xx status."""
    try:
        parse_request(path, query)
    except MetadataRequestError as exc:
        error = exc
    else:
        return
    assert error.status in (400, 404)
    assert error.message


@given(
    st.sampled_from(["recursive", "alt", "wait_for_change", "timeout_sec", "format", "licenses"]),
    st.text(max_size=12),
)
def test_every_validated_parameter_names_itself_when_refused(name: str, value: str) -> None:
    """Whatever the value, a refusal names the parameter it came from."""
    try:
        parse_request("/computeMetadata/v1/", [(name, value)])
    except MetadataRequestError as exc:
        error = exc
    else:
        return
    assert error.status == 400
    assert name in error.message


_segment = st.text(
    st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=10
).filter(lambda s: s not in (".", ".."))
_value = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
_scope = st.text(
    st.characters(codec="utf-8", exclude_characters=","),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() == s)


@st.composite
def _requests(draw: st.DrawFn) -> MetadataRequest:
    segments = tuple(draw(st.lists(_segment, max_size=5)))
    return MetadataRequest(
        segments=segments,
        slash=True if not segments else draw(st.booleans()),
        recursive=draw(st.booleans()),
        alt=draw(st.none() | st.sampled_from(Alt)),
        wait_for_change=draw(st.booleans()),
        last_etag=draw(st.none() | _value),
        timeout_sec=draw(st.none() | st.integers(0, MAX_WAIT_S)),
        audience=draw(st.none() | _value),
        token_format=draw(st.none() | st.sampled_from(TokenFormat)),
        licenses=draw(st.booleans()),
        scopes=draw(st.none() | st.lists(_scope, min_size=1, max_size=3).map(tuple)),
    )


@given(_requests())
def test_requests_round_trip_through_path_and_query(request: MetadataRequest) -> None:
    """A request rebuilt from its own path and query pairs is the same request."""
    assert request == parse_request(request.path, request.query())


@given(_requests())
def test_requests_round_trip_through_the_wire_encoding(request: MetadataRequest) -> None:
    """URL-encoding the query and decoding it as the server does loses nothing."""
    raw = urlencode(request.query()).encode()
    assert request == parse_request(request.path, parse_query(raw))


# The tree and its encodings.


def test_camel_case_joins_dashed_names() -> None:
    """Recursive JSON spells path names in camelCase."""
    assert camel_case("numeric-project-id") == "numericProjectId"
    assert camel_case("id") == "id"


def test_vm_listing_has_directories_with_slashes() -> None:
    """A listing is one name a line, directories marked by a slash."""
    listing = _text(_view(Flavour.VM), "/computeMetadata/v1/instance/").splitlines()
    assert {"attributes/", "network-interfaces/", "service-accounts/", "zone", "id"} <= set(listing)
    assert listing == sorted(listing)


def test_root_lists_compute_metadata() -> None:
    """`/` lists the only top-level directory."""
    assert _text(_view(Flavour.VM), "/") == "computeMetadata/\n"


def test_zone_and_region_are_resource_names() -> None:
    """Zones (every flavour) and Cloud Run's region are `projects/NUM/...` names."""
    vm = _view(Flavour.VM)
    run = _view(Flavour.SERVERLESS)
    assert (
        _text(vm, "/computeMetadata/v1/instance/zone")
        == "projects/123456789012/zones/us-central1-a"
    )
    assert (
        _text(run, "/computeMetadata/v1/instance/region")
        == "projects/123456789012/regions/us-central1"
    )


@pytest.mark.parametrize(
    ("flavour", "path", "exists"),
    [
        (Flavour.SERVERLESS, "instance/attributes/", False),
        (Flavour.SERVERLESS, "instance/region", True),
        (Flavour.SERVERLESS, "instance/network-interfaces/", False),
        (Flavour.GKE, "instance/attributes/cluster-name", True),
        (Flavour.GKE, "instance/region", False),
        (Flavour.GKE, "project/attributes/", False),
        (Flavour.VM, "project/attributes/enable-oslogin", True),
        (Flavour.VM, "instance/network-interfaces/0/ip", True),
        (Flavour.VM, "instance/network-interfaces/0/ipv6s", False),
        (Flavour.VM, "universe/universe-domain", True),
    ],
)
def test_each_flavour_exposes_its_own_tree(flavour: Flavour, path: str, exists: bool) -> None:
    """GKE and Cloud Run show a smaller tree than a VM; missing paths are 404."""
    segments = (*V1, *path.rstrip("/").split("/"))
    if exists:
        resolve(build_tree(_view(flavour)), segments)
    else:
        with pytest.raises(MetadataRequestError) as caught:
            resolve(build_tree(_view(flavour)), segments)
        assert caught.value.status == 404


def test_no_service_account_means_no_service_accounts_tree() -> None:
    """An instance without an account has nothing under service-accounts."""
    with pytest.raises(MetadataRequestError):
        resolve(build_tree(_view(Flavour.VM, account=False)), (*V1, "instance", "service-accounts"))


def test_recursive_json_is_camel_case_and_keeps_attribute_keys() -> None:
    """Recursive JSON: camelCase names, numbers as numbers, attribute keys verbatim, no tokens."""
    body = json.loads(_text(_view(Flavour.VM), "/computeMetadata/v1/", recursive="true"))
    assert body["project"]["numericProjectId"] == 123456789012
    assert body["project"]["projectId"] == "p-demo"
    assert body["instance"]["id"] == 1234567890123456789
    assert body["instance"]["attributes"] == {"cluster-name": "istio", "Mixed_Key": "v"}
    assert body["instance"]["networkInterfaces"][0]["ip"] == "10.128.0.2"
    account = body["instance"]["serviceAccounts"]["default"]
    assert {"aliases", "email", "scopes"} == set(account)
    assert "sa@p-demo.iam.gserviceaccount.com" in body["instance"]["serviceAccounts"]


def test_any_attribute_key_lists_in_index_then_name_order() -> None:
    """Attribute keys are anyone's text (the admin API sets them): digits sort first, by value."""
    view = _view(Flavour.VM)
    view.instance.attributes = {"10": "a", "2": "b", "\u00b2": "c", "z": "d"}
    listing = _text(view, "/computeMetadata/v1/instance/attributes/")
    assert ["2", "10", "z", "\u00b2"] == listing.split()


def test_dynamic_leaves_are_listed_but_never_encoded() -> None:
    """token and identity appear in a listing, not in recursive JSON."""
    tree = build_tree(_view(Flavour.VM))
    account = resolve(tree, (*V1, "instance", "service-accounts", "default"))
    assert isinstance(account, Directory)
    assert Dynamic.TOKEN is account.entries["token"]
    listing = _text(_view(Flavour.VM), "/computeMetadata/v1/instance/service-accounts/default/")
    assert listing == "aliases\nemail\nidentity\nscopes\ntoken\n"
    assert "token" not in to_json(account)


def test_recursive_text_form_is_path_value_lines() -> None:
    """`alt=text` on a recursive directory gives `relative/path value` lines, lists repeated."""
    text = _text(
        _view(Flavour.VM), "/computeMetadata/v1/instance/", recursive="true", alt="text"
    ).splitlines()
    assert "attributes/cluster-name istio" in text
    assert "service-accounts/default/aliases default" in text
    assert not any(line.startswith("service-accounts/default/token") for line in text)


def test_leaf_alt_json_is_the_json_encoded_value() -> None:
    """`alt=json` on a leaf encodes it; numbers stay numbers."""
    view = _view(Flavour.VM)
    assert _text(view, "/computeMetadata/v1/project/project-id", alt="json") == '"p-demo"'
    assert (
        _text(view, "/computeMetadata/v1/project/numeric-project-id", alt="json") == "123456789012"
    )


def test_scopes_are_one_a_line() -> None:
    """A list value's text form has one item a line."""
    scopes = _text(
        _view(Flavour.VM), "/computeMetadata/v1/instance/service-accounts/default/scopes"
    )
    assert scopes == "https://www.googleapis.com/auth/cloud-platform\n"


def test_directory_without_slash_redirects() -> None:
    """Without the slash and without recursive, a directory is a redirect to the slashed path."""
    assert Redirect("/computeMetadata/v1/instance/") == _get(
        _view(Flavour.VM), "/computeMetadata/v1/instance"
    )


def test_recursive_directory_without_slash_is_served() -> None:
    """recursive=true needs no slash (google-auth sends one, others may not)."""
    rendered = _get(
        _view(Flavour.VM), "/computeMetadata/v1/instance/service-accounts/default", recursive="true"
    )
    assert isinstance(rendered, Rendered)
    assert rendered.content_type == "application/json"


def test_leaf_with_slash_is_404() -> None:
    """A value is not a directory."""
    with pytest.raises(MetadataRequestError) as caught:
        _get(_view(Flavour.VM), "/computeMetadata/v1/project/project-id/")
    assert caught.value.status == 404


def test_token_cache_is_bounded() -> None:
    """Caller-chosen scopes cannot grow the metadata token cache past its size."""
    world = parse_world(demo_world_text())
    cache = metadata._TokenCache()
    email = "vm-default@mesh-demo.iam.gserviceaccount.com"
    first = cache.get(world, email, ("s0",))
    for i in range(1, metadata.TOKEN_CACHE_SIZE + 5):
        cache.get(world, email, (f"s{i}",))
    assert len(cache._tokens) == metadata.TOKEN_CACHE_SIZE
    assert cache.get(world, email, ("s0",)) != first  # evicted, so a new token was issued
