"""A small echo server for scenarios: who called, how, and with what identity.

    python -m scenarios.apps.echo [--host 0.0.0.0] [--port $PORT|8080]
                                  [--cert CRT --key KEY [--client-ca CA]]

One port speaks HTTP/1.1, h2c with prior knowledge and, given a certificate,
h2 or HTTP/1.1 over TLS (ALPN); with `--client-ca` it asks for a client
certificate and reports its SPIFFE identity. Every answer is JSON:

* `GET|POST /anything` -> the report: method, path, query, HTTP version, scheme,
  client and server addresses, request headers, peer SPIFFE id, body size, and the
  Cloud Run variables (`K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`) it runs under;
* gRPC (`content-type: application/grpc`), any method -> one message holding the
  report as JSON bytes, `grpc-status: 0`; no .proto is needed on either side;
* `POST /stream` -> each request body chunk is echoed back as it arrives, so a
  client can prove a path streams both ways instead of buffering;
* `GET /fetch?url=U[&header=Name:Value ...][&idtoken=AUDIENCE]` -> calls U (like
  fortio's fetch) and reports its status, headers and body. `idtoken` first asks
  the metadata server for an ID token with that audience (`1` means U's origin) and
  sends it as `Authorization: Bearer`. Only hosts whose every address lies in
  `ECHO_FETCH_ALLOW` (comma-separated CIDRs; loopback when unset) are fetched, so
  the app is never an open relay; the world harness allows the world's network.

SIGTERM stops it within a second, after logging `echo: SIGTERM` on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PEER: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("peer")
"""TLS facts about the connection a request arrived on (set per connection)."""

MAX_FETCH_BODY = 1 << 20


def spiffe_id(peercert: dict[str, Any] | None) -> str | None:
    """The `spiffe://` URI SAN of a peer certificate (ssl's dict form), if any."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI" and str(value).startswith("spiffe://"):
            return str(value)
    return None


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def grpc_messages(body: bytes) -> list[bytes]:
    """Split a gRPC request body into its length-prefixed messages; ValueError if torn."""
    out: list[bytes] = []
    at = 0
    while at < len(body):
        if len(body) - at < 5:
            raise ValueError("truncated gRPC frame header")
        size = int.from_bytes(body[at + 1 : at + 5], "big")
        if len(body) - at - 5 < size:
            raise ValueError("truncated gRPC message")
        out.append(body[at + 5 : at + 5 + size])
        at += 5 + size
    return out


def report(scope: Scope, body_size: int) -> dict[str, Any]:
    peer = PEER.get({})
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    return {
        "service": os.environ.get("K_SERVICE"),
        "revision": os.environ.get("K_REVISION"),
        "configuration": os.environ.get("K_CONFIGURATION"),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "method": scope["method"],
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "tls": bool(peer.get("tls")),
        "alpn": peer.get("alpn"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "headers": headers,
        "peer_spiffe": peer.get("spiffe"),
        "body_size": body_size,
    }


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _json(send: Send, obj: Any, status: int = 200) -> None:
    body = json.dumps(obj, indent=1).encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"server", b"krun-echo"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _metadata_id_token(audience: str) -> str:
    host = os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/identity?{query}"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return str(answer.read().decode())


DEFAULT_FETCH_ALLOW = "127.0.0.0/8,::1/128"


def fetch_allowed(host: str, allow: str, resolve: Callable[[str], list[str]]) -> str | None:
    """None when every address of `host` is inside an `allow` CIDR, else why not."""
    try:
        networks = [ipaddress.ip_network(c.strip()) for c in allow.split(",") if c.strip()]
    except ValueError as exc:
        return f"ECHO_FETCH_ALLOW is not a list of CIDRs: {exc}"
    try:
        addresses = [ipaddress.ip_address(a) for a in resolve(host)]
    except (OSError, ValueError) as exc:
        return f"cannot resolve {host!r}: {exc}"
    outside = [str(a) for a in addresses if not any(a in n for n in networks)]
    if not addresses or outside:
        return f"{host!r} resolves outside ECHO_FETCH_ALLOW ({allow}): {outside or 'nothing'}"
    return None


def _resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def fetch(url: str, headers: list[tuple[str, str]], idtoken: str | None) -> dict[str, Any]:
    """Call `url` (http or https, trusting SSL_CERT_FILE) and describe the answer."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return {"url": url, "error": "only http and https URLs with a host can be fetched"}
    refused = fetch_allowed(
        parsed.hostname, os.environ.get("ECHO_FETCH_ALLOW", DEFAULT_FETCH_ALLOW), _resolve
    )
    if refused is not None:
        return {"url": url, "error": f"refused: {refused}"}
    sent = list(headers)
    if idtoken:
        audience = f"{parsed.scheme}://{parsed.netloc}" if idtoken == "1" else idtoken
        try:
            sent.append(("Authorization", f"Bearer {_metadata_id_token(audience)}"))
        except (OSError, urllib.error.URLError) as exc:
            return {"url": url, "error": f"no ID token from the metadata server: {exc}"}
    request = urllib.request.Request(url, headers=dict(sent))  # noqa: S310 - scheme checked
    context = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as answer:  # noqa: S310
            status, got = answer.status, list(answer.headers.items())
            body = answer.read(MAX_FETCH_BODY)
    except urllib.error.HTTPError as exc:
        status, got, body = exc.code, list(exc.headers.items()), exc.read(MAX_FETCH_BODY)
    except (OSError, urllib.error.URLError) as exc:
        return {"url": url, "error": str(exc)}
    try:
        parsed_body: Any = json.loads(body)
    except ValueError:
        parsed_body = body.decode("utf-8", "replace")
    return {"url": url, "status": status, "headers": got, "body": parsed_body}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The echo ASGI app (HTTP only; lifespan events are ignored)."""
    if scope["type"] != "http":
        return
    content_type = dict(scope["headers"]).get(b"content-type", b"")
    if content_type.startswith(b"application/grpc"):
        await _grpc(scope, receive, send)
    elif scope["path"] == "/stream":
        await _stream(receive, send)
    elif scope["path"] == "/fetch":
        await _read_body(receive)
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        url = (query.get("url") or [""])[0]
        if not url:
            await _json(send, {"error": "url is required"}, 400)
            return
        headers = [tuple(h.split(":", 1)) for h in query.get("header", []) if ":" in h]
        pairs = [(k.strip(), v.strip()) for k, v in headers]
        idtoken = (query.get("idtoken") or [None])[0]
        await _json(send, await asyncio.to_thread(fetch, url, pairs, idtoken))
    else:
        body = await _read_body(receive)
        await _json(send, report(scope, len(body)))


async def _grpc(scope: Scope, receive: Receive, send: Send) -> None:
    body = await _read_body(receive)
    try:
        messages = grpc_messages(body)
    except ValueError as exc:
        status, text, payload = b"13", str(exc).encode(), b""
    else:
        status, text = b"0", b""
        payload = grpc_frame(json.dumps(report(scope, sum(map(len, messages)))).encode())
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/grpc")],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
    trailers = [(b"grpc-status", status)] + ([(b"grpc-message", text)] if text else [])
    await send({"type": "http.response.trailers", "headers": trailers})


async def _stream(receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        more = bool(message.get("more_body", False))
        await send({"type": "http.response.body", "body": chunk, "more_body": more})
        if not more:
            return


def _tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2", "http/1.1"])
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


async def serve(
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT when it is None)."""
    from hypercorn.app_wrappers import ASGIWrapper  # noqa: PLC0415 - keep --help fast
    from hypercorn.asyncio.tcp_server import TCPServer  # noqa: PLC0415
    from hypercorn.asyncio.worker_context import WorkerContext  # noqa: PLC0415
    from hypercorn.config import Config  # noqa: PLC0415

    config = Config()
    config.include_server_header = False
    config.accesslog = None
    loop = asyncio.get_running_loop()
    # Our ASGI aliases are looser than hypercorn's TypedDicts; the shapes match.
    wrapped = ASGIWrapper(app)  # type: ignore[arg-type]
    context = WorkerContext(None)

    open_connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            open_connections[task] = writer
            task.add_done_callback(lambda t: open_connections.pop(t, None))
        ssl_object = writer.get_extra_info("ssl_object")
        peer: dict[str, Any] = {"tls": ssl_object is not None}
        if ssl_object is not None:
            peer["alpn"] = ssl_object.selected_alpn_protocol()
            peer["spiffe"] = spiffe_id(ssl_object.getpeercert())
        PEER.set(peer)
        await TCPServer(wrapped, loop, config, context, {}, reader, writer)

    server = await asyncio.start_server(connected, host, port, ssl=tls, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    if stop is None:
        stop = asyncio.Event()

        def terminate() -> None:
            print("echo: SIGTERM", file=sys.stderr, flush=True)
            stop.set()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        loop.add_signal_handler(signal.SIGINT, stop.set)
    if ready is not None:
        ready(bound)
    async with server:
        await stop.wait()
        server.close()
        # Idle keep-alive connections would outlive the loop otherwise.
        for task, writer in list(open_connections.items()):
            writer.transport.abort()
            task.cancel()
        if open_connections:
            await asyncio.wait(list(open_connections), timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="echo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    args = parser.parse_args(argv)
    tls = _tls_context(args.cert, args.key, args.client_ca) if args.cert else None

    def ready(port: int) -> None:
        print(f"echo: listening on {args.host}:{port}", file=sys.stderr, flush=True)

    asyncio.run(serve(args.host, args.port, tls=tls, ready=ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
