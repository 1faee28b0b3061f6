"""What istiod parses from the network: any input gives a result or the module's own error."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from emulator.istio import protos
from emulator.istio.ads import Kind, Request, Watch, on_request, on_sent, responds
from emulator.istio.ca import CsrError, parse_csr
from emulator.istio.nodes import NodeError, parse_node

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
NODE_PART = st.text(alphabet="abc.~,:019 -", max_size=12)
NODE_IDS = st.text(max_size=60) | st.tuples(
    st.sampled_from(["sidecar", "router"]) | NODE_PART,
    st.ip_addresses().map(str) | NODE_PART,
    NODE_PART,
    NODE_PART,
).map("~".join)
METADATA_KEYS = st.sampled_from(
    ["NAMESPACE", "INSTANCE_IPS", "LABELS", "GENERATOR", "INTERCEPTION_MODE", "HTTP_PROXY_PORT"]
)
METADATA_VALUES = JSON | st.ip_addresses().map(str) | st.integers(-1, 70000).map(str)
METADATA = st.dictionaries(METADATA_KEYS | st.text(max_size=8), METADATA_VALUES, max_size=6)


@given(NODE_IDS, METADATA)
def test_any_node_parses_or_is_a_node_error(node_id: str, metadata: dict[str, Any]) -> None:
    """A node id and metadata from a stream give a Proxy with a namespace, or NodeError."""
    try:
        proxy = parse_node(node_id, metadata)
    except NodeError:
        return
    assert proxy.namespace
    assert proxy.http_proxy_port is None or 0 < proxy.http_proxy_port < 65536


PEM_CSR = st.binary(max_size=300).map(
    lambda raw: (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(raw).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )
)


@given(st.text(max_size=200) | PEM_CSR)
def test_any_csr_field_parses_or_is_a_csr_error(pem: str) -> None:
    """Garbage in CreateCertificate's csr field is INVALID_ARGUMENT, never another exception."""
    try:
        parse_csr(pem)
    except CsrError as exc:
        assert exc.code == "INVALID_ARGUMENT"


TYPES = st.sampled_from([protos.LISTENER, protos.CLUSTER, protos.ENDPOINT])
REQUESTS = st.builds(
    Request,
    type_url=TYPES,
    names=st.lists(st.sampled_from(["a", "b", "*"]), max_size=3).map(tuple),
    version=st.sampled_from(["", "v1", "v2"]),
    nonce=st.sampled_from(["", "n1", "n2", "n3"]),
    error=st.none() | st.just("bad"),
)


@given(st.lists(REQUESTS, max_size=12))
def test_any_request_sequence_keeps_the_stream_consistent(requests: list[Request]) -> None:
    """ACKs only match the last nonce sent, stale requests change nothing, NACKs keep the reason."""
    watches: dict[str, Watch] = {}
    sent = 0
    for request in requests:
        before = watches.get(request.type_url)
        watch, kind = on_request(before, request)
        if kind is Kind.ACK:
            assert before is not None
            assert request.nonce == before.sent_nonce
            assert (watch.acked_version, watch.nack) == (request.version, None)
        elif kind is Kind.STALE:
            assert before is not None
            assert (watch.names, watch.wildcard) == (before.names, before.wildcard)
        elif kind is Kind.NACK:
            assert watch.nack == request.error
        assert "*" not in watch.names
        assert len(watch.history) <= 8
        if responds(kind):
            sent += 1
            watch = on_sent(watch, f"v{sent}", f"n{sent}")
        watches[request.type_url] = watch
