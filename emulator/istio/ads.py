"""The state-of-the-world xDS state machine of one stream; pure.

Theory of operation (istiod's `shouldRespond`, and what real clients do):

Rule 1. A request with `error_detail` is a NACK of the response whose nonce it
        carries: record the reason, answer nothing (the next change pushes again).
Rule 2. A request with an empty nonce is an initial request, even if it carries a
        version: clients that reconnect send the last version they accepted with an
        empty nonce (gRPC does; see feasibility.md). Always answer it.
Rule 3. A non-empty nonce for a type this stream never answered (a client that
        reconnected to a restarted server) is treated as initial too.
Rule 4. A nonce that is not the last one sent is stale: the client is answering an
        older response and will answer the newer one. Ignore it.
Rule 5. The last nonce with different resource names changes the subscription:
        answer with the new set (it also acknowledges the version).
Rule 6. Otherwise it is an ACK: record the version, answer nothing.

Wildcard: a first LDS/CDS request without names (Envoy) subscribes to everything of
the type, and stays wildcard; `*` among the names is an explicit wildcard. Named
types (RDS, EDS, SDS, and everything from gRPC) never are: an empty list there
unsubscribes.

Pushes: after a model change, each subscribed type whose rendered version differs
from the last one sent is sent again with a fresh nonce, ACKed or not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from emulator.istio import protos

WILDCARD_TYPES = frozenset({protos.LISTENER, protos.CLUSTER})


class Kind(enum.StrEnum):
    INITIAL = "INITIAL"
    SUBSCRIPTION = "SUBSCRIPTION"
    ACK = "ACK"
    NACK = "NACK"
    STALE = "STALE"


@dataclass(frozen=True, slots=True)
class Request:
    type_url: str
    names: tuple[str, ...] = ()
    version: str = ""
    nonce: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Watch:
    """What one stream has asked for and been sent, for one type."""

    type_url: str
    names: frozenset[str] = frozenset()
    wildcard: bool = False
    sent_version: str = ""
    sent_nonce: str = ""
    acked_version: str = ""
    nack: str | None = None
    """The reason of the last NACK, cleared by the next ACK."""
    nacked_version: str = ""
    history: tuple[str, ...] = field(default=())
    """The last few request kinds, newest last (for the debug endpoint)."""

    @property
    def subscribed(self) -> bool:
        return self.wildcard or bool(self.names)


def on_request(watch: Watch | None, request: Request) -> tuple[Watch, Kind]:
    """The watch after a request, and how the request was classified."""
    names = frozenset(request.names)
    current = watch or Watch(request.type_url)
    if request.error is not None:
        kind = Kind.NACK if watch is None or request.nonce == current.sent_nonce else Kind.STALE
        if kind is Kind.NACK:
            current = replace(current, nack=request.error, nacked_version=current.sent_version)
        return _note(current, kind), kind
    if not request.nonce or watch is None:
        kind = Kind.INITIAL
        wildcard = _wildcard(request.type_url, names, first=watch is None or not watch.names)
        if watch is not None and watch.wildcard and not names:
            wildcard = True
        updated = replace(current, names=names - {"*"}, wildcard=wildcard)
        return _note(updated, kind), kind
    if request.nonce != current.sent_nonce:
        return _note(current, Kind.STALE), Kind.STALE
    wildcard = current.wildcard if not names else "*" in names
    if names - {"*"} != current.names or wildcard != current.wildcard:
        updated = replace(
            current, names=names - {"*"}, wildcard=wildcard, acked_version=request.version
        )
        return _note(updated, Kind.SUBSCRIPTION), Kind.SUBSCRIPTION
    updated = replace(current, acked_version=request.version, nack=None)
    return _note(updated, Kind.ACK), Kind.ACK


def responds(kind: Kind) -> bool:
    return kind in (Kind.INITIAL, Kind.SUBSCRIPTION)


def on_sent(watch: Watch, version: str, nonce: str) -> Watch:
    return replace(watch, sent_version=version, sent_nonce=nonce)


def push_due(watch: Watch, version: str) -> bool:
    """Whether a model change must be pushed: subscribed and the content changed."""
    return watch.subscribed and version != watch.sent_version


def _wildcard(type_url: str, names: frozenset[str], *, first: bool) -> bool:
    if "*" in names:
        return True
    return type_url in WILDCARD_TYPES and not names and first


def _note(watch: Watch, kind: Kind) -> Watch:
    return replace(watch, history=(*watch.history, kind.value)[-8:])
