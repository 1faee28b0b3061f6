"""The SotW state machine: how each request is classified, and when a change is pushed."""

from __future__ import annotations

import pytest

from emulator.istio import protos
from emulator.istio.ads import Kind, Request, Watch, on_request, on_sent, push_due, responds

LDS, CDS, EDS, RDS = protos.LISTENER, protos.CLUSTER, protos.ENDPOINT, protos.ROUTE

SENT = Watch(LDS, frozenset({"a"}), sent_version="v1", sent_nonce="n1")
SENT_WILDCARD = Watch(CDS, wildcard=True, sent_version="v1", sent_nonce="n1")

# (name, watch before, request, expected kind, names after, wildcard after)
TABLE = [
    ("envoy first CDS is wildcard", None, Request(CDS), Kind.INITIAL, set(), True),
    ("explicit * is wildcard", None, Request(EDS, ("*",)), Kind.INITIAL, set(), True),
    ("grpc first LDS is named", None, Request(LDS, ("a",)), Kind.INITIAL, {"a"}, False),
    ("empty EDS is not wildcard", None, Request(EDS), Kind.INITIAL, set(), False),
    (
        "reconnect: empty nonce with a version is initial",
        None,
        Request(LDS, ("a",), version="v7"),
        Kind.INITIAL,
        {"a"},
        False,
    ),
    (
        "unknown nonce on a new stream is initial",
        None,
        Request(LDS, ("a",), version="v7", nonce="old-3"),
        Kind.INITIAL,
        {"a"},
        False,
    ),
    ("ack", SENT, Request(LDS, ("a",), "v1", "n1"), Kind.ACK, {"a"}, False),
    ("stale nonce", SENT, Request(LDS, ("a", "b"), "v0", "n0"), Kind.STALE, {"a"}, False),
    ("nack", SENT, Request(LDS, ("a",), "v0", "n1", "bad"), Kind.NACK, {"a"}, False),
    ("stale nack", SENT, Request(LDS, ("a",), "v0", "n0", "bad"), Kind.STALE, {"a"}, False),
    ("new name", SENT, Request(LDS, ("a", "b"), "v1", "n1"), Kind.SUBSCRIPTION, {"a", "b"}, False),
    ("unsubscribe all", SENT, Request(LDS, (), "v1", "n1"), Kind.SUBSCRIPTION, set(), False),
    ("wildcard ack", SENT_WILDCARD, Request(CDS, (), "v1", "n1"), Kind.ACK, set(), True),
    (
        "wildcard re-request on a stream",
        SENT_WILDCARD,
        Request(CDS, (), "v1", ""),
        Kind.INITIAL,
        set(),
        True,
    ),
]


@pytest.mark.parametrize(
    ("watch", "request_", "kind", "names", "wildcard"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_classification(
    watch: Watch | None,
    request_: Request,
    kind: Kind,
    names: set[str],
    wildcard: bool,
) -> None:
    """Each request is classified as istiod classifies it, and the subscription follows."""
    after, got = on_request(watch, request_)
    assert (kind, names, wildcard) == (got, set(after.names), after.wildcard)


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (Kind.INITIAL, True),
        (Kind.SUBSCRIPTION, True),
        (Kind.ACK, False),
        (Kind.NACK, False),
        (Kind.STALE, False),
    ],
)
def test_which_requests_get_an_answer(kind: Kind, answer: bool) -> None:
    """Only initial requests and subscription changes are answered; ACKs and NACKs are not."""
    assert answer == responds(kind)


def test_nack_keeps_reason_until_the_next_ack() -> None:
    """A NACK records its reason and the rejected version; the next ACK clears it."""
    nacked, _ = on_request(SENT, Request(LDS, ("a",), "v0", "n1", "unknown field"))
    assert (nacked.nack, nacked.nacked_version, nacked.acked_version) == ("unknown field", "v1", "")
    resent = on_sent(nacked, "v2", "n2")
    acked, kind = on_request(resent, Request(LDS, ("a",), "v2", "n2"))
    assert (kind, acked.nack, acked.acked_version) == (Kind.ACK, None, "v2")


def test_push_only_when_subscribed_and_changed() -> None:
    """A change is pushed to a subscribed type whose version differs, ACKed or not."""
    assert push_due(SENT, "v2")
    assert not push_due(SENT, "v1")
    assert not push_due(Watch(EDS), "v2")
    assert push_due(SENT_WILDCARD, "v9")


def test_history_keeps_the_last_eight_kinds() -> None:
    """The debug history is bounded."""
    watch: Watch | None = None
    for _ in range(12):
        watch, _ = on_request(watch, Request(EDS, ("x",)))
    assert watch is not None
    assert list(watch.history) == ["INITIAL"] * 8
