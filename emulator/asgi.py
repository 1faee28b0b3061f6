"""A small ASGI toolkit for the emulated services: requests, responses, routing.

We write raw ASGI rather than use a framework because the fakes must control
every byte a client can see (status, header spelling, content type), and the
parsers here are pure functions that property tests exercise directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1 << 20
"""Requests larger than this are refused with 413: no emulated API takes more."""

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""HTTP status -> the `status` string of Google's JSON error body."""

REASONS = {
    200: "OK",
    301: "Moved Permanently",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class QueryError(ValueError):
    """A query string that cannot be decoded."""


def parse_query(raw: bytes) -> list[tuple[str, str]]:
    """Split an `application/x-www-form-urlencoded` query into ordered pairs.

    `+` means a space, percent escapes are decoded as UTF-8, a key without `=`
    has the empty value. Bytes that are not UTF-8 after decoding raise
    QueryError, so a handler never sees replacement characters.
    """
    pairs: list[tuple[str, str]] = []
    if not raw:
        return pairs
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise QueryError("query string is not ASCII") from exc
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((_unquote_strict(key), _unquote_strict(value)))
    return pairs


def _unquote_strict(text: str) -> str:
    try:
        return unquote(text.replace("+", " "), encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise QueryError(f"query component {text[:40]!r} is not UTF-8") from exc


@dataclass(slots=True)
class Request:
    method: str
    path: str
    """Percent-decoded path, as ASGI servers give it."""
    raw_path: bytes
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    """Lower-cased names, in arrival order."""
    body: bytes
    client: tuple[str, int] | None
    scheme: str
    http_version: str
    scope: Scope = field(repr=False)

    def header(self, name: str) -> str | None:
        """The last value of a header (names are case-insensitive)."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key == wanted:
                found = value
        return found

    def param(self, name: str) -> str | None:
        """The last value of a query parameter."""
        found = None
        for key, value in self.query:
            if key == name:
                found = value
        return found

    def json(self) -> Any:
        """The body parsed as JSON; ValueError names what was wrong."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"request body is not valid JSON: {exc}") from exc

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased ('' when absent)."""
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    def bearer_token(self) -> str | None:
        return parse_bearer(self.header("authorization"))


def parse_bearer(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` value (None when absent or another scheme)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class BodyTooLargeError(Exception):
    pass


async def read_request(scope: Scope, receive: Receive, *, max_body: int = MAX_BODY) -> Request:
    """Collect an HTTP request; QueryError or BodyTooLargeError on bad input."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            raise BodyTooLargeError(f"request body exceeds {max_body} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
    client = scope.get("client")
    return Request(
        method=scope["method"],
        path=scope["path"],
        raw_path=scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape"),
        query=parse_query(scope.get("query_string", b"")),
        headers=headers,
        body=b"".join(chunks),
        client=(client[0], client[1]) if client else None,
        scheme=scope.get("scheme", "http"),
        http_version=scope.get("http_version", "1.1"),
        scope=scope,
    )


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] | None = None

    @classmethod
    def json(
        cls,
        obj: Any,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        *,
        content_type: str = "application/json; charset=UTF-8",
    ) -> Response:
        body = (json.dumps(obj, indent=2) + "\n").encode()
        return cls(status, body, [("content-type", content_type), *(headers or [])])

    @classmethod
    def text(
        cls,
        text: str,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        *,
        content_type: str = "text/plain; charset=utf-8",
    ) -> Response:
        return cls(status, text.encode(), [("content-type", content_type), *(headers or [])])


def google_error(
    code: int, message: str, *, status: str | None = None, details: list[Any] | None = None
) -> Response:
    """Google's JSON error body: {"error": {"code", "message", "status"[, "details"]}}."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return Response.json({"error": error}, code)


async def send_response(send: Send, response: Response) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    if not any(k.lower() == "content-length" for k, _ in response.headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    start: Message = {"type": "http.response.start", "status": response.status, "headers": headers}
    if response.trailers is not None:
        start["trailers"] = True
    await send(start)
    await send({"type": "http.response.body", "body": response.body})
    if response.trailers is not None:
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(k.encode(), v.encode()) for k, v in response.trailers],
            }
        )


Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler


class Router:
    """Regex routes; named groups become keyword arguments of the handler."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        self.routes.append(
            Route(frozenset(methods.upper().split()), re.compile(pattern + r"\Z"), handler)
        )

    def route(self, methods: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(methods, pattern, handler)
            return handler

        return register

    async def dispatch(self, request: Request) -> Response | None:
        """The matching handler's response, a 405, or None when no path matches."""
        allowed: set[str] = set()
        for route in self.routes:
            match = route.pattern.match(request.path)
            if match is None:
                continue
            if request.method not in route.methods:
                allowed |= route.methods
                continue
            return await route.handler(request, **match.groupdict())
        if allowed:
            return google_error(405, f"method {request.method} is not allowed on {request.path}")
        return None


RequestHandler = Callable[[Request, Receive], Awaitable[Response]]
"""Handles one read request; `receive` is still open for disconnect detection."""


def http_app(
    handle: RequestHandler, *, error: Callable[[int, str], Response], service: str
) -> ASGIApp:
    """The ASGI boundary every service shares: read, handle, answer.

    Unreadable requests and handler bugs become responses built by `error`, in
    the service's own error shape, so a client never sees a dropped connection
    that the real service would not drop.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            request = await read_request(scope, receive)
        except QueryError as exc:
            await send_response(send, error(400, f"invalid query string: {exc}"))
            return
        except BodyTooLargeError as exc:
            await send_response(send, error(413, str(exc)))
            return
        try:
            response = await handle(request, receive)
        except Exception as exc:  # the boundary: a bug must not drop the connection
            response = error(500, f"{service}: internal error: {type(exc).__name__}: {exc}")
        await send_response(send, response)

    return app


def json_api_app(router: Router, *, service: str) -> ASGIApp:
    """An ASGI app for a Google JSON API: errors always come back as Google JSON."""

    async def handle(request: Request, receive: Receive) -> Response:
        response = await router.dispatch(request)
        if response is None:
            return google_error(404, f"{service}: no such method: {request.path}")
        return response

    return http_app(handle, error=google_error, service=service)


async def handle_lifespan(receive: Receive, send: Send) -> None:
    """Answer ASGI lifespan messages: our services keep no state to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
