"""Serving the emulated services: listeners, TLS, fault injection, clean stop.

Each service is an ASGI app on its own listener (port 0 by default, so tests
never collide). Connections are accepted by asyncio and handed to hypercorn's
connection class, which speaks HTTP/1.1, h2 over TLS (ALPN) and h2c with prior
knowledge. We accept ourselves, instead of letting hypercorn bind, for two
reasons: bound ports are known before anyone connects, and fault injection can
reset a connection (a real TCP RST) before or after TLS.

`EmulatorThread` runs the whole thing in a background thread with its own event
loop: the shape pytest fixtures and the demo use.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, Self, cast

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config

from emulator.asgi import ASGIApp, Receive, Scope, Send, google_error, send_response
from emulator.faults import FaultKind
from emulator.grpc_asgi import HTTP_TO_GRPC, status_response
from emulator.world import World

log = logging.getLogger(__name__)

CONNECTION: contextvars.ContextVar[asyncio.Transport] = contextvars.ContextVar("connection")
"""The connection a request arrived on; fault injection aborts it to reset."""


@dataclass(slots=True)
class ServiceSpec:
    name: str
    """Key in the endpoint map, and the service name faults select."""
    app: ASGIApp
    tls: bool
    hostnames: tuple[str, ...] = ()
    """DNS names the service answers to in a world; its certificate covers them."""
    host: str = "127.0.0.1"
    port: int = 0
    fault_service: str = ""
    """Service name for fault matching when it differs from `name`."""
    server: OwnServer | None = None
    """A service that binds and answers by itself (istiod's grpc.aio server); `app` is unused."""


class OwnServer(Protocol):
    """A listener the emulator starts and stops but does not serve through hypercorn."""

    async def start(self, host: str, port: int) -> str:
        """Bind and serve; return the URL for the endpoint map."""
        ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class _Listener:
    spec: ServiceSpec
    sock: socket.socket
    ssl_context: ssl.SSLContext | None
    server: asyncio.Server | None = None
    url: str = ""


class _Accepted(asyncio.Protocol):
    """Pauses reading the moment a connection is accepted.

    No byte may be consumed before we decide between an outage reset, TLS and
    plain HTTP: a ClientHello read into a plain stream buffer would be lost to
    the TLS layer and the handshake would hang.
    """

    def __init__(self, accepted: Callable[[asyncio.Transport], None]) -> None:
        self._accepted = accepted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)
        transport.pause_reading()
        # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and ours
        # are made with proto 0: without it, Nagle holds each response's body until
        # the client's delayed ACK, 40 ms per keep-alive request.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._accepted(transport)


def abort_connection(transport: asyncio.BaseTransport) -> None:
    """Close with RST rather than FIN, as a crashed or overloaded server would."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    cast("asyncio.Transport", transport).abort()


def with_faults(app: ASGIApp, world: World, service: str) -> ASGIApp:
    """Wrap a service app so request-level faults apply to it."""

    async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        faults = world.faults.take(service, scope["method"], scope["path"], world.clock())
        for fault in faults:
            if fault.kind is FaultKind.LATENCY:
                await asyncio.sleep(fault.latency_ms / 1000)
        for fault in faults:
            if fault.kind is FaultKind.RESET:
                transport = CONNECTION.get(None)
                if transport is not None:
                    abort_connection(transport)
                    return
            if fault.kind is FaultKind.STATUS:
                headers = {k.lower(): v for k, v in scope["headers"]}
                if headers.get(b"content-type", b"").startswith(b"application/grpc"):
                    code = HTTP_TO_GRPC.get(fault.status)
                    if code is None:
                        code = HTTP_TO_GRPC[503]
                    await send_response(send, status_response(code, fault.message))
                else:
                    await send_response(send, google_error(fault.status, fault.message))
                return
        await app(scope, receive, send)

    return faulty


def _hypercorn_config() -> Config:
    config = Config()
    config.include_server_header = False  # services set `Server` themselves
    config.accesslog = None
    config.errorlog = logging.getLogger("emulator.hypercorn")
    config.keep_alive_timeout = 30
    return config


class Emulator:
    """A set of services sharing one world, served from the current event loop."""

    def __init__(self, world: World, specs: list[ServiceSpec], *, state_dir: Path) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate service names in {names}")
        self.world = world
        self.specs = specs
        self.state_dir = state_dir
        self.ca_file = state_dir / "ca.pem"
        self.endpoints: dict[str, str] = {}
        self._listeners: list[_Listener] = []
        self._own: list[OwnServer] = []
        self._connections: dict[asyncio.Task[Any], asyncio.Transport] = {}
        self._config = _hypercorn_config()

    def _bind(self, spec: ServiceSpec) -> socket.socket:
        family = socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((spec.host, spec.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno, f"service {spec.name}: cannot bind {spec.host}:{spec.port}: {exc}"
            ) from exc
        sock.listen(256)
        sock.setblocking(False)
        return sock

    def _ssl_context(self, spec: ServiceSpec) -> ssl.SSLContext:
        names = [*spec.hostnames, spec.host, "localhost", "127.0.0.1"]
        unique = list(dict.fromkeys(n for n in names if n not in ("0.0.0.0", "::")))
        cert = self.world.pki.issue_server(unique)
        cert_path, key_path = cert.write(self.state_dir / "tls", spec.name.replace("/", "_"))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    async def start(self) -> dict[str, str]:
        """Bind every listener and start accepting; return the endpoint map."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.world.pki.write_root(self.ca_file)
        try:
            for spec in self.specs:
                if spec.server is not None:
                    self._own.append(spec.server)
                    self.endpoints[spec.name] = await spec.server.start(spec.host, spec.port)
                    continue
                sock = self._bind(spec)
                context = self._ssl_context(spec) if spec.tls else None
                listener = _Listener(spec, sock, context)
                self._listeners.append(listener)
                host, port = sock.getsockname()[:2]
                shown = f"[{host}]" if ":" in host else host
                listener.url = f"{'https' if spec.tls else 'http'}://{shown}:{port}"
                self.endpoints[spec.name] = listener.url
            loop = asyncio.get_running_loop()
            for listener in self._listeners:
                listener.server = await loop.create_server(
                    partial(_Accepted, self._callback(listener)), sock=listener.sock, backlog=256
                )
        except BaseException:
            await self.stop()
            raise
        log.info("emulator.started", extra={"endpoints": self.endpoints})
        return dict(self.endpoints)

    def _callback(self, listener: _Listener) -> Callable[[asyncio.Transport], None]:
        """What to do with each accepted connection, whose reading is still paused."""
        spec = listener.spec
        service = spec.fault_service or spec.name
        # Our ASGI aliases are looser than hypercorn's TypedDicts; the shapes match.
        app = ASGIWrapper(with_faults(spec.app, self.world, service))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        context = WorkerContext(None)

        async def serve(transport: asyncio.Transport) -> None:
            if self.world.faults.take_outage(service, self.world.clock()) is not None:
                abort_connection(transport)
                return
            reader = asyncio.StreamReader(limit=1 << 20)
            protocol = asyncio.StreamReaderProtocol(reader)
            if listener.ssl_context is not None:
                try:
                    secure = await loop.start_tls(
                        transport,
                        protocol,
                        listener.ssl_context,
                        server_side=True,
                        ssl_handshake_timeout=10,
                    )
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                    log.debug("tls handshake failed on %s: %s", spec.name, exc)
                    transport.abort()
                    return
                if secure is None:  # the peer went away during the handshake
                    transport.abort()
                    return
                transport = secure
            else:
                transport.set_protocol(protocol)
            protocol.connection_made(transport)
            if listener.ssl_context is None:
                transport.resume_reading()
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            CONNECTION.set(transport)
            await TCPServer(app, loop, self._config, context, {}, reader, writer)

        def accepted(transport: asyncio.Transport) -> None:
            task = loop.create_task(serve(transport))
            self._connections[task] = transport
            task.add_done_callback(lambda t: self._connections.pop(t, None))

        return accepted

    async def stop(self) -> None:
        """Stop accepting, end open connections, release every socket."""
        for listener in self._listeners:
            if listener.server is not None:
                listener.server.close()
            else:
                listener.sock.close()
        # Abort first: a graceful TLS close would wait for a close_notify that an
        # idle keep-alive client never sends.
        for task, transport in list(self._connections.items()):
            transport.abort()
            task.cancel()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5)
        for listener in self._listeners:
            if listener.server is not None:
                await listener.server.wait_closed()
        self._listeners.clear()
        for own in self._own:
            await own.stop()
        self._own.clear()


@dataclass
class EmulatorThread:
    """An Emulator on a private event loop in a daemon thread."""

    world: World
    specs: list[ServiceSpec]
    state_dir: Path
    endpoints: dict[str, str] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _emulator: Emulator | None = None

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.pem"

    def start(self) -> dict[str, str]:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="emulator", daemon=True)
        self._thread.start()
        self._emulator = Emulator(self.world, self.specs, state_dir=self.state_dir)
        try:
            self.endpoints = asyncio.run_coroutine_threadsafe(self._emulator.start(), loop).result(
                timeout=60
            )
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._emulator is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._emulator.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
        self._loop = self._thread = self._emulator = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running(world: World, specs: list[ServiceSpec], state_dir: Path) -> Iterator[EmulatorThread]:
    """Start an EmulatorThread for the duration of a `with` block."""
    thread = EmulatorThread(world, specs, state_dir)
    with thread:
        yield thread
