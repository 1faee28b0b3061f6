"""Query parsing and routing: pure functions, exercised with properties."""

from __future__ import annotations

import asyncio
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.asgi import QueryError, Request, Response, Router, parse_query


def make_request(
    method: str = "GET", path: str = "/", headers: list[tuple[str, str]] | None = None
) -> Request:
    return Request(method, path, path.encode(), [], headers or [], b"", None, "http", "1.1", {})


@given(st.lists(st.tuples(st.text(), st.text()), max_size=6))
def test_urlencoded_pairs_round_trip(pairs: list[tuple[str, str]]) -> None:
    """Whatever urlencode produces, parse_query gives back the same ordered pairs."""
    # Empty keys with empty values encode to '=', which we keep as ('', '').
    assert pairs == parse_query(urlencode(pairs).encode())


@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_raise_query_error(raw: bytes) -> None:
    """Garbage never escapes as anything but QueryError, and parses contain only str."""
    try:
        pairs = parse_query(raw)
    except QueryError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs)


def test_plus_is_space_and_bare_key_is_empty() -> None:
    """Form encoding rules: '+' is a space, a key alone has the empty value."""
    assert [("a", "b c"), ("flag", ""), ("x", "1=2")] == parse_query(b"a=b+c&flag&x=1%3D2")


def test_invalid_utf8_escape_is_refused() -> None:
    """%FF is not UTF-8: a QueryError naming the component, not a replacement char."""
    with pytest.raises(QueryError, match="not UTF-8"):
        parse_query(b"a=" + quote(b"\xff").encode())


def test_router_passes_groups_and_reports_405() -> None:
    """Named groups become kwargs; a known path with another method is 405."""
    router = Router()

    async def handler(request: Request, name: str) -> Response:
        return Response.text(name)

    router.add("GET", r"/things/(?P<name>[a-z]+)", handler)
    ok = asyncio.run(router.dispatch(make_request(path="/things/abc")))
    assert ok is not None
    assert (200, b"abc") == (ok.status, ok.body)
    wrong = asyncio.run(router.dispatch(make_request("DELETE", "/things/abc")))
    assert wrong is not None
    assert 405 == wrong.status
    assert asyncio.run(router.dispatch(make_request(path="/things/abc/more"))) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("Bearer", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    """Only a Bearer scheme with a non-empty token counts."""
    headers = [("authorization", header)] if header is not None else []
    assert token == make_request(headers=headers).bearer_token()
