"""Unary gRPC served from an ASGI app, beside a REST API on the same host and port.

Google serves its APIs over REST and gRPC on one host (`container.googleapis.com:443`);
so do we. A gRPC request is HTTP/2 POST `/<package.Service>/<Method>` with
`content-type: application/grpc`, a body of length-prefixed messages and a
response that ends in trailers carrying `grpc-status` and `grpc-message`.

Framing is pure (`decode_frames`, `encode_frame`) and property-tested.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc

from emulator.asgi import Request, Response

_HEADER = struct.Struct(">BI")
MAX_MESSAGE = 4 << 20


class FrameError(ValueError):
    """The body is not a well-formed sequence of gRPC length-prefixed messages."""


def encode_frame(message: bytes) -> bytes:
    return _HEADER.pack(0, len(message)) + message


def decode_frames(body: bytes, *, max_message: int = MAX_MESSAGE) -> list[bytes]:
    """Split a request body into messages; FrameError on truncation or compression."""
    messages: list[bytes] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _HEADER.size:
            raise FrameError("truncated gRPC message header")
        compressed, length = _HEADER.unpack_from(body, offset)
        offset += _HEADER.size
        if compressed not in (0, 1):
            raise FrameError(f"invalid compressed flag {compressed}")
        if compressed:
            raise FrameError("compressed messages are not supported (no grpc-encoding agreed)")
        if length > max_message:
            raise FrameError(f"message of {length} bytes exceeds the {max_message}-byte limit")
        if len(body) - offset < length:
            raise FrameError("truncated gRPC message body")
        messages.append(body[offset : offset + length])
        offset += length
    return messages


class GrpcAbortError(Exception):
    """Raised by a handler to end the call with a status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class UnaryMethod:
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    handler: Callable[[Any, Request], Awaitable[Any]]


HTTP_TO_GRPC = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def is_grpc(request: Request) -> bool:
    return request.content_type.startswith("application/grpc")


def status_response(code: grpc.StatusCode, message: str) -> Response:
    """A response with no message and the given status in its trailers."""
    return Response(200, b"", [("content-type", "application/grpc")], _trailers(code, message))


def _trailers(code: grpc.StatusCode, message: str) -> list[tuple[str, str]]:
    trailers = [("grpc-status", str(code.value[0]))]
    if message:
        # grpc-message is percent-encoded UTF-8 (PROTOCOL-HTTP2: Status-Message).
        trailers.append(("grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")))
    return trailers


async def dispatch(methods: dict[str, UnaryMethod], request: Request) -> Response:
    """Run one unary call; every failure becomes a gRPC status, never an HTTP error."""
    method = methods.get(request.path)
    if request.method != "POST":
        return status_response(grpc.StatusCode.UNIMPLEMENTED, "gRPC requires POST")
    if method is None:
        return status_response(
            grpc.StatusCode.UNIMPLEMENTED, f"method {request.path} is not implemented"
        )
    encoding = request.header("grpc-encoding")
    if encoding not in (None, "identity"):
        return status_response(
            grpc.StatusCode.UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not supported"
        )
    try:
        frames = decode_frames(request.body)
        if len(frames) != 1:
            raise FrameError(f"a unary call carries one message, got {len(frames)}")
        message = method.deserialize(frames[0])
    except Exception as exc:  # malformed frames or protobuf bytes
        return status_response(grpc.StatusCode.INTERNAL, f"cannot parse request: {exc}")
    try:
        reply = await method.handler(message, request)
    except GrpcAbortError as exc:
        return status_response(exc.code, exc.message)
    body = encode_frame(method.serialize(reply))
    return Response(
        200, body, [("content-type", "application/grpc")], _trailers(grpc.StatusCode.OK, "")
    )
