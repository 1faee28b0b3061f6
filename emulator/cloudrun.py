"""The Cloud Run front end: `*.a.run.app` over TLS, IAM invoker checks, h2c to instances.

What a request meets, in order, as on Cloud Run:

1. The `Host` names a service (`RunService.url`); an unknown host gets Google's 404 page.
2. Unless the service's invokers include `allUsers`, the caller needs a Google-signed
   ID token, taken from `X-Serverless-Authorization` when present, else from
   `Authorization`. No token: 403. A token that does not verify (signature, issuer
   `accounts.google.com`, expiry on the world clock, audience = the service URL with
   or without a trailing slash; a URL with a path is not accepted): 401. A valid token
   whose principal lacks `run.routes.invoke` (the service's invokers, or the
   project's IAM policy): 403.
3. The request is forwarded as HTTP/2 cleartext with prior knowledge (the
   `--use-http2` contract) to an instance's container port, streaming both ways,
   trailers included (gRPC). Hop-by-hop and `X-Google-*` headers are dropped;
   `X-Forwarded-For`, `X-Forwarded-Proto`, `Forwarded`, `X-Cloud-Trace-Context` and
   `traceparent` are added. The verified token reaches the container with its
   signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`, as Cloud Run does; when
   `X-Serverless-Authorization` carried it, `Authorization` passes untouched.
4. With no instance running, one is started (scale from zero) through the
   launcher the harness gives `RunInstances`; more start while every instance is
   at the service's concurrency, never beyond `max_instances`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import jwt

from emulator.asgi import ASGIApp, Message, Receive, Scope, Send, parse_bearer
from emulator.tokens import GOOGLE_ISSUER
from emulator.world import Principal, RunService, World

log = logging.getLogger(__name__)

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"
INVOKE_PERMISSION = "run.routes.invoke"
ISSUERS = (GOOGLE_ISSUER, "accounts.google.com")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "host",
    }
)
Address = tuple[str, int]
Launcher = Callable[[RunService], Address]
"""Starts one instance of a service and returns its (host, port) once it accepts connections."""


def service_key(service: RunService) -> str:
    return f"{service.project_id}/{service.region}/{service.name}"


def service_host(service: RunService) -> str:
    return service.url.removeprefix("https://")


def hostnames(world: World) -> tuple[str, ...]:
    """Every `*.a.run.app` host of the world, for the front end's certificate."""
    return tuple(service_host(s) for s in world.run_services())


# Authentication and authorization (pure apart from reading the world).


@dataclass(frozen=True, slots=True)
class Verdict:
    status: int
    """200 to forward, else the status to answer with (401 or 403)."""
    reason: str
    principal: Principal | None = None
    token_header: str | None = None
    """The header whose token was verified (its signature is removed on the way in)."""


def audiences(service: RunService) -> frozenset[str]:
    return frozenset({service.url, service.url + "/"})


def authorize(world: World, service: RunService, headers: dict[str, str], *, now: float) -> Verdict:
    """Decide a request as Cloud Run's IAM check does; `headers` have lower-case names."""
    public = "allUsers" in service.invokers
    header = (
        "x-serverless-authorization" if "x-serverless-authorization" in headers else "authorization"
    )
    raw = headers.get(header)
    if public:
        return Verdict(200, "public service", token_header=None)
    if raw is None:
        return Verdict(403, "no credentials")
    token = parse_bearer(raw)
    if token is None:
        return Verdict(401, "not a bearer token")
    try:
        claims = jwt.decode(
            token,
            world.tokens.public_key,
            algorithms=["RS256"],
            audience=sorted(audiences(service)),
            options={"verify_exp": False, "verify_iat": False, "verify_iss": False},
        )
    except jwt.InvalidTokenError as exc:
        return Verdict(401, f"invalid ID token: {exc}")
    if claims.get("iss") not in ISSUERS:
        return Verdict(401, f"issuer {claims.get('iss')!r} is not Google")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now:
        return Verdict(401, "ID token expired")
    email = claims.get("email")
    if not isinstance(email, str):
        return Verdict(403, "the token names no email")
    principal = Principal.for_email(email, user=not email.endswith(".gserviceaccount.com"))
    allowed = not service.invokers.isdisjoint(principal.members) or world.allowed(
        principal, INVOKE_PERMISSION, project_id=service.project_id
    )
    if not allowed:
        return Verdict(403, f"{principal.subject} lacks {INVOKE_PERMISSION}", principal, header)
    return Verdict(200, "invoker", principal, header)


def strip_signature(token: str) -> str:
    head, _, rest = token.partition(".")
    payload = rest.partition(".")[0]
    return f"{head}.{payload}.{SIGNATURE_REMOVED}"


def trace_context() -> tuple[str, str]:
    """A fresh (`X-Cloud-Trace-Context`, `traceparent`) pair naming the same trace."""
    trace = secrets.token_hex(16)
    span = secrets.randbits(63) or 1
    return f"{trace}/{span};o=1", f"00-{trace}-{span:016x}-01"


def upstream_headers(
    headers: Iterable[tuple[str, str]],
    *,
    client_ip: str,
    verdict: Verdict,
    trace: tuple[str, str],
) -> list[tuple[str, str]]:
    """The request headers an instance receives, minus pseudo-headers."""
    out: list[tuple[str, str]] = []
    forwarded_for: str | None = None
    has_trace = False
    for name, value in headers:
        if name in HOP_BY_HOP or name.startswith(("x-google-", ":")):
            continue
        if name == "te" and value.lower() == "trailers":
            continue
        if name == "x-forwarded-for":
            forwarded_for = value
            continue
        if name in ("x-forwarded-proto", "forwarded"):
            continue
        if name == verdict.token_header:
            token = parse_bearer(value)
            out.append((name, f"Bearer {strip_signature(token)}" if token else value))
            continue
        if name in ("x-cloud-trace-context", "traceparent"):
            has_trace = True
        out.append((name, value))
    out.append(("x-forwarded-for", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip))
    out.append(("x-forwarded-proto", "https"))
    out.append(("forwarded", f'for="{client_ip}";proto=https'))
    if not has_trace:
        out.append(("x-cloud-trace-context", trace[0]))
        out.append(("traceparent", trace[1]))
    return out


_TITLES = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}


def error_page(status: int, path: str) -> bytes:
    """Google's front-end HTML error page, as Cloud Run serves it."""
    title = _TITLES.get(status, "Error")
    path = escape(path)  # the request target is the client's: never echo markup
    if status == 401:
        detail = f"Your client does not have permission to the requested URL <code>{path}</code>."
    elif status == 403:
        detail = (
            f"Your client does not have permission to get URL <code>{path}</code> from this server."
        )
    elif status == 404:
        detail = f"The requested URL <code>{path}</code> was not found on this server."
    else:
        detail = "The service you requested is not available yet. Please try again in 30 seconds."
    return (
        "<html><head>\n"
        '<meta http-equiv="content-type" content="text/html;charset=utf-8">\n'
        f"<title>{status} {title}</title>\n"
        "</head>\n"
        "<body text=#000000 bgcolor=#ffffff>\n"
        f"<h1>Error: {title}</h1>\n"
        f"<h2>{detail}</h2>\n"
        "<h2></h2>\n"
        "</body></html>\n"
    ).encode()


# Instances and scaling.


@dataclass(slots=True)
class _Pool:
    addresses: list[Address] = field(default_factory=list)
    inflight: dict[Address, int] = field(default_factory=dict)
    starting: int = 0
    lock: asyncio.Lock | None = None
    turn: itertools.count[int] = field(default_factory=itertools.count)


class NoInstanceError(Exception):
    """No instance could serve the request (launch failed or no launcher)."""


class RunInstances:
    """Where each service's instances listen, and how to start one when needed.

    The harness registers instances it started itself (`add`, for min instances)
    and gives a launcher for scale-up; on loopback tests register a static address.
    """

    def __init__(self, launcher: Launcher | None = None) -> None:
        self.launcher = launcher
        self._pools: dict[str, _Pool] = {}

    def _pool(self, key: str) -> _Pool:
        return self._pools.setdefault(key, _Pool())

    def add(self, service: RunService | str, address: Address) -> None:
        key = service if isinstance(service, str) else service_key(service)
        pool = self._pool(key)
        if address not in pool.addresses:
            pool.addresses.append(address)
            pool.inflight.setdefault(address, 0)

    def remove(self, service: RunService | str, address: Address) -> None:
        key = service if isinstance(service, str) else service_key(service)
        pool = self._pool(key)
        if address in pool.addresses:
            pool.addresses.remove(address)

    def addresses(self, service: RunService | str) -> list[Address]:
        key = service if isinstance(service, str) else service_key(service)
        return list(self._pool(key).addresses)

    def _pick(self, service: RunService, pool: _Pool) -> Address | None:
        free = [a for a in pool.addresses if pool.inflight.get(a, 0) < service.concurrency]
        if free:
            return free[next(pool.turn) % len(free)]
        at_max = len(pool.addresses) + pool.starting >= service.max_instances
        if pool.addresses and (at_max or self.launcher is None):
            # Cloud Run queues here; the least busy instance takes the request.
            return min(pool.addresses, key=lambda a: pool.inflight.get(a, 0))
        return None

    async def acquire(self, service: RunService) -> Address:
        """An instance to send one request to, starting one when none can take it."""
        pool = self._pool(service_key(service))
        if pool.lock is None:
            pool.lock = asyncio.Lock()
        picked = self._pick(service, pool)
        if picked is None:
            async with pool.lock:
                picked = self._pick(service, pool)
                if picked is None:
                    picked = await self._launch(service, pool)
        pool.inflight[picked] = pool.inflight.get(picked, 0) + 1
        return picked

    async def _launch(self, service: RunService, pool: _Pool) -> Address:
        launcher = self.launcher
        if launcher is None or service.max_instances < 1:
            raise NoInstanceError(f"no instance of {service_key(service)} and no way to start one")
        pool.starting += 1
        try:
            address = await asyncio.to_thread(launcher, service)
        except Exception as exc:
            raise NoInstanceError(f"starting an instance of {service.name} failed: {exc}") from exc
        finally:
            pool.starting -= 1
        self.add(service, address)
        return address

    def release(self, service: RunService, address: Address) -> None:
        pool = self._pool(service_key(service))
        if address in pool.inflight:
            pool.inflight[address] = max(0, pool.inflight[address] - 1)


# Forwarding as h2c.


class UpstreamError(Exception):
    """The instance could not be reached or broke the HTTP/2 exchange."""


class H2Stream:
    """One HTTP/2 request on its own cleartext (or already-TLS) connection, streamed.

    `send_body`/`end` feed the request; `events()` yields the response as it comes.
    Flow control is honoured both ways: received DATA is acknowledged only once the
    consumer took it, so a slow reader slows the sender instead of filling memory.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._conn = h2.connection.H2Connection(config=config)
        self._window_open = asyncio.Event()
        self.stream_id = 0

    @classmethod
    async def open(cls, address: Address, *, connect_timeout: float = 10) -> H2Stream:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*address), connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {address[0]}:{address[1]}: {exc}") from exc
        return cls(reader, writer)

    async def start(self, headers: list[tuple[str, str]], *, end_stream: bool = False) -> None:
        self._conn.initiate_connection()
        self.stream_id = self._conn.get_next_available_stream_id()
        encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self._conn.send_headers(self.stream_id, encoded, end_stream=end_stream)
        await self._flush()

    async def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def send_body(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            window = min(
                self._conn.local_flow_control_window(self.stream_id),
                self._conn.max_outbound_frame_size,
            )
            if window <= 0:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            chunk, view = view[:window], view[window:]
            self._conn.send_data(self.stream_id, chunk.tobytes())
            await self._flush()

    async def end(self) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._conn.end_stream(self.stream_id)
        await self._flush()

    async def reset(self) -> None:
        with contextlib.suppress(h2.exceptions.H2Error, OSError):
            self._conn.reset_stream(self.stream_id)
            await self._flush()

    async def events(self) -> Any:
        """Yield ('headers', list) / ('data', bytes) / ('trailers', list) / ('end', None)."""
        while True:
            try:
                raw = await self._reader.read(65536)
            except OSError as exc:
                raise UpstreamError(str(exc)) from exc
            if not raw:
                raise UpstreamError("the instance closed the connection")
            try:
                events = self._conn.receive_data(raw)
            except h2.exceptions.ProtocolError as exc:
                raise UpstreamError(f"HTTP/2 protocol error from the instance: {exc}") from exc
            await self._flush()
            for event in events:
                if isinstance(event, h2.events.WindowUpdated):
                    self._window_open.set()
                elif isinstance(event, h2.events.ResponseReceived):
                    yield "headers", _decode(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    yield "data", event.data
                    self._conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                    await self._flush()
                elif isinstance(event, h2.events.TrailersReceived):
                    yield "trailers", _decode(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    yield "end", None
                    return
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise UpstreamError(f"the instance reset the stream ({event})")
            self._window_open.set()

    async def close(self) -> None:
        self._window_open.set()
        with contextlib.suppress(h2.exceptions.H2Error, OSError, RuntimeError):
            self._conn.close_connection()
            self._writer.write(self._conn.data_to_send())
        self._writer.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self._writer.wait_closed()


def _decode(headers: Iterable[tuple[bytes | str, bytes | str]]) -> list[tuple[str, str]]:
    return [
        (
            k.decode("latin-1") if isinstance(k, bytes) else k,
            v.decode("latin-1") if isinstance(v, bytes) else v,
        )
        for k, v in headers
    ]


# The ASGI app.


class _FrontEnd:
    def __init__(self, world: World, instances: RunInstances) -> None:
        self.world = world
        self.instances = instances

    def service_for(self, host: str) -> RunService | None:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return next((s for s in self.world.run_services() if service_host(s) == name), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        lookup = dict(headers)
        path = scope.get("raw_path", b"/").decode("latin-1") or "/"
        service = self.service_for(lookup.get("host", ""))
        if service is None:
            await _page(send, 404, path)
            return
        verdict = authorize(self.world, service, lookup, now=self.world.clock())
        if verdict.status != 200:
            log.info("cloudrun.denied", extra={"service": service.name, "reason": verdict.reason})
            extra = []
            if verdict.status == 401:
                extra.append(
                    (
                        b"www-authenticate",
                        (
                            b'Bearer error="invalid_token" '
                            b'error_description="The access token could not be verified"'
                        ),
                    )
                )
            await _page(send, verdict.status, path, extra)
            return
        try:
            address = await self.instances.acquire(service)
        except NoInstanceError as exc:
            log.warning("cloudrun.no_instance", extra={"service": service.name, "error": str(exc)})
            await _page(send, 503, path)
            return
        try:
            await self._forward(scope, receive, send, service, address, headers, verdict)
        finally:
            self.instances.release(service, address)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        service: RunService,
        address: Address,
        headers: list[tuple[str, str]],
        verdict: Verdict,
    ) -> None:
        client = scope.get("client") or ("0.0.0.0", 0)
        trace = trace_context()
        target = scope.get("raw_path", b"/").decode("latin-1") or "/"
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        pseudo = [
            (":method", scope["method"]),
            (":scheme", "http"),
            (":authority", service_host(service)),
            (":path", target),
        ]
        wants_trailers = any(k == "te" and "trailers" in v.lower() for k, v in headers)
        forwarded = upstream_headers(headers, client_ip=client[0], verdict=verdict, trace=trace)
        if wants_trailers:
            forwarded.append(("te", "trailers"))
        try:
            stream = await H2Stream.open(address)
            await stream.start(pseudo + forwarded)
        except (UpstreamError, OSError) as exc:
            log.warning("cloudrun.upstream", extra={"service": service.name, "error": str(exc)})
            await _page(send, 503, target)
            return
        upload = asyncio.create_task(_upload(receive, stream))
        started = False
        try:
            async for kind, value in stream.events():
                if kind == "headers":
                    status = int(next((v for k, v in value if k == ":status"), "502"))
                    out = [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in value
                        if not k.startswith(":") and k not in HOP_BY_HOP and k != "date"
                    ]
                    if not any(k == b"server" for k, _ in out):
                        out.append((b"server", b"Google Frontend"))
                    out.append((b"x-cloud-trace-context", trace[0].encode()))
                    message: Message = {
                        "type": "http.response.start",
                        "status": status,
                        "headers": out,
                    }
                    if wants_trailers:
                        message["trailers"] = True
                    await send(message)
                    started = True
                elif kind == "data":
                    await send({"type": "http.response.body", "body": value, "more_body": True})
                elif kind == "trailers":
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in value]
                    await send({"type": "http.response.trailers", "headers": encoded})
                    wants_trailers = False
                    return
                elif kind == "end":
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    if wants_trailers:
                        await send({"type": "http.response.trailers", "headers": []})
                    return
        except UpstreamError as exc:
            log.warning("cloudrun.upstream", extra={"service": service.name, "error": str(exc)})
            if not started:
                await _page(send, 503, target)
        finally:
            upload.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await upload
            await stream.close()


async def _upload(receive: Receive, stream: H2Stream) -> None:
    """Copy the client's request body to the instance as it arrives."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            await stream.reset()
            return
        body = message.get("body", b"")
        if body:
            await stream.send_body(body)
        if not message.get("more_body", False):
            await stream.end()
            return


async def _page(
    send: Send, status: int, path: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error_page(status, path)
    headers = [
        (b"content-type", b"text/html; charset=UTF-8"),
        (b"content-length", str(len(body)).encode()),
        (b"server", b"Google Frontend"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(world: World, instances: RunInstances) -> ASGIApp:
    """The front end for every Cloud Run service of `world`."""
    return _FrontEnd(world, instances)


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT without verifying it (what an instance can read after stripping)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims
