"""Whatever a client sends, the API server answers with an object or a Status, never a crash."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.kube.apiserver import create_app
from emulator.kube.cluster import kube_cluster
from emulator.testing import demo_world_text
from emulator.world import World
from emulator.worldfile import parse_world

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["metadata", "name", "data", "kind", "apiVersion", "spec", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def world() -> World:
    return parse_world(demo_world_text())


def call_raw(
    world: World,
    method: str,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    query: bytes = b"",
) -> tuple[int, bytes]:
    """One request through the ASGI app, in process, as the cluster's administrator: status, body."""
    cluster = world.cluster("mesh-demo", "us-central1-c", "istio")
    app = create_app(world, cluster)
    token = kube_cluster(world, cluster).admin_token
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", content_type.encode()),
        ],
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def run() -> None:
        await app(scope, receive, send)

    asyncio.run(run())
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], payload


def call(
    world: World,
    method: str,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    query: bytes = b"",
) -> tuple[int, Any]:
    """`call_raw` with the JSON answer decoded."""
    code, payload = call_raw(world, method, path, body, content_type, query)
    return code, json.loads(payload)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=JSON,
    method=st.sampled_from(["POST", "PUT", "PATCH"]),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/merge-patch+json",
            "application/json-patch+json",
            "application/strategic-merge-patch+json",
        ]
    ),
)
def test_any_json_body(world: World, body: Any, method: str, content_type: str) -> None:
    """Any JSON document to a config map is accepted or refused with a 4xx Status."""
    path = "/api/v1/namespaces/default/configmaps" + (
        "" if method == "POST" else "/kube-root-ca.crt"
    )
    code, answer = call(world, method, path, json.dumps(body).encode(), content_type)
    assert code < 500, answer
    if code >= 400:
        assert ("Status", "Failure", code) == (answer["kind"], answer["status"], answer["code"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=40), selector=st.text(max_size=20))
def test_any_bytes_and_selectors(world: World, raw: bytes, selector: str) -> None:
    """Undecodable bodies and arbitrary selectors are 400 Status errors at worst."""
    code, answer = call(world, "POST", "/api/v1/namespaces/default/secrets", raw)
    assert code < 500, answer
    query = f"labelSelector={selector}".encode().replace(b"&", b"%26").replace(b"#", b"%23")
    code, answer = call(world, "GET", "/api/v1/pods", b"", query=query)
    assert code in (200, 400), answer


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=JSON | st.text(max_size=20))
def test_any_continue_token(world: World, token: Any) -> None:
    """A list's `continue` key, whatever it decodes to, pages on or is a 400 Status."""
    text = token if isinstance(token, str) else json.dumps({"after": token})
    encoded = base64.urlsafe_b64encode(text.encode()).decode()
    for value in (encoded, text):
        query = urlencode({"continue": value}).encode()
        code, answer = call(world, "GET", "/api/v1/configmaps", b"", query=query)
        assert code in (200, 400), answer


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["limit", "resourceVersion", "timeoutSeconds"]),
    value=st.text(max_size=8) | st.sampled_from(["²", "٣", "9" * 5000]),
    watch=st.booleans(),
)
def test_any_numeric_parameter(world: World, name: str, value: str, watch: bool) -> None:
    """Numbers in the query (limit, resourceVersion, timeoutSeconds) never crash a list or watch."""
    # The last of a repeated parameter counts, so a fuzzed timeoutSeconds replaces the 1.
    query = urlencode([("watch", str(watch).lower()), ("timeoutSeconds", "1"), (name, value)])
    code, body = call_raw(world, "GET", "/api/v1/configmaps", b"", query=query.encode())
    assert code in (200, 400), body


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=JSON
    | st.fixed_dictionaries(
        {},
        optional={
            "audiences": JSON,
            "expirationSeconds": JSON,
            "boundObjectRef": JSON,
        },
    )
)
def test_any_token_request(world: World, spec: Any) -> None:
    """A TokenRequest with any spec mints a token or is refused with a 4xx Status."""
    path = "/api/v1/namespaces/default/serviceaccounts/default/token"
    code, answer = call(world, "POST", path, json.dumps({"spec": spec}).encode())
    assert code < 500, answer
    if code == 201:
        audiences = answer["spec"]["audiences"]
        assert audiences
        assert all(isinstance(a, str) and a for a in audiences)
